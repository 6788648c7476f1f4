"""TLS and bearer tokens against a real roster-server (--tls-cert/--tls-key/--auth-tokens, and --tls-ca for
client certificates), with the CLI's conventions: https:// needs a CA file and a CA file needs https://; the
token file is re-read when it changes."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from pathlib import Path

import grpc
import pytest

from roster_client.client import RosterClient
from roster_client.errors import RosterCallError, RosterConfigError
from roster_client.follower import Follower

from .certs import Ca
from .servers import RosterServer, bin_dir, wait_for


def accepted(server: RosterServer, ca: Ca, token_file: Path) -> bool:
    with RosterClient(server.url, tls_ca=ca.path, token_file=token_file) as client:
        try:
            client.list_collectors()
            return True
        except RosterCallError as e:
            assert e.code == grpc.StatusCode.UNAUTHENTICATED, e
            return False


def token_pair() -> tuple:
    token = "roster_" + secrets.token_hex(32)
    return token, f"operator:py sha256:{hashlib.sha256(token.encode()).hexdigest()}\n"


def test_tls_and_a_token_file_against_a_real_server(tmp_path: Path) -> None:
    ca = Ca(tmp_path)
    cert, key = ca.issue("server", server=True)
    token, line = token_pair()
    (tmp_path / "tokens").write_text(line)
    (tmp_path / "token").write_text(token + "\n")
    client_cert, client_key = ca.issue("operator", uri="roster://operator/py-mtls")
    server = RosterServer(bin_dir(), tmp_path / "server", [
        "--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca.path),
        "--auth-tokens", str(tmp_path / "tokens")])
    server.start()
    try:
        assert server.url.startswith("https://")
        producer = str(uuid.uuid4())
        with RosterClient(server.url, tls_ca=ca.path, token_file=tmp_path / "token") as client:
            assert client.register_producer(producer, "127.0.0.1:9100", 1000).created
            assert [p.id for p in client.iter_producers()] == [producer]
            collector = str(uuid.uuid4())
            with Follower(server.url, collector, tls_ca=ca.path, token_file=tmp_path / "token") as follower:
                assert next(iter(follower)).ids == (producer,)
        # Mutual TLS: the client certificate names the caller; no token needed.
        with RosterClient(server.url, tls_ca=ca.path, tls_cert=client_cert, tls_key=client_key) as client:
            assert client.get_producer(producer).id == producer
        # No credential: UNAUTHENTICATED, which is not transient (one attempt).
        with RosterClient(server.url, tls_ca=ca.path) as client, pytest.raises(RosterCallError) as caught:
            client.list_collectors()
        assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED and caught.value.attempts == 1
        # A token rotated in its file is sent from the next call on, without a new client.
        new_token, new_line = token_pair()
        (tmp_path / "tokens").write_text(line + new_line)
        (tmp_path / "new-token").write_text(new_token)
        wait_for(lambda: accepted(server, ca, tmp_path / "new-token"), "the server to read the new token line")
        with RosterClient(server.url, tls_ca=ca.path, token_file=tmp_path / "token") as client:
            assert client.get_producer(producer).id == producer
            (tmp_path / "token").write_text(new_token)
            (tmp_path / "old-token").write_text(token)
            (tmp_path / "tokens").write_text(new_line)
            wait_for(lambda: not accepted(server, ca, tmp_path / "old-token"), "the server to revoke the old token")
            assert client.get_producer(producer).id == producer
    finally:
        server.stop()


@pytest.mark.parametrize(
    "target,settings,message",
    [
        ("127.0.0.1:50051", {}, "has no http:// or https:// scheme"),
        ("https://127.0.0.1:50051", {}, "give tls_ca"),
        ("http://127.0.0.1:50051", {"tls_ca": "ca.pem"}, "use https://"),
        ("http://127.0.0.1:0", {}, "port 0"),
        ("http://127.0.0.1:50051/path", {}, "no path"),
        ("http://127.0.0.1:50051", {"token_file": "missing-token"}, "missing-token"),
        ("http://127.0.0.1:50051", {"max_attempts": 0}, "max_attempts"),
    ],
)
def test_settings_that_cannot_work_are_refused_naming_the_fix(target: str, settings: dict, message: str) -> None:
    with pytest.raises(RosterConfigError) as caught:
        RosterClient(target, **settings)
    assert message in str(caught.value)


def test_from_env_reads_the_clis_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("roster_" + "0" * 64)
    monkeypatch.setenv("ROSTER_SERVER", "http://127.0.0.1:1234")
    monkeypatch.setenv("ROSTER_TOKEN_FILE", str(tmp_path / "token"))
    client = RosterClient.from_env()
    assert client.target == "http://127.0.0.1:1234"
    assert client.connection.metadata() == (("authorization", "Bearer roster_" + "0" * 64),)
    assert RosterClient.from_env(target="http://10.0.0.1:50051").target == "http://10.0.0.1:50051"
    monkeypatch.setenv("ROSTER_SERVER", "https://127.0.0.1:1234")
    with pytest.raises(RosterConfigError, match="ROSTER_TLS_CA|tls_ca"):
        RosterClient.from_env()


@pytest.mark.parametrize(
    "collector_id,message",
    [("collector-1", "give the collector's UUID"), ("00000000-0000-0000-0000-000000000000", "nil UUID")],
)
def test_a_follower_refuses_a_collector_id_that_is_not_one(collector_id: str, message: str) -> None:
    with pytest.raises(RosterConfigError, match=message):
        Follower("http://127.0.0.1:50051", collector_id)
