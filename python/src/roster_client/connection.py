"""How a roster server is reached: the target URL, TLS files, the bearer token file, and the one place channels
are made (sync and asyncio), with the same conventions as roster's CLI (docs/SECURITY.md, cli/src/args.rs):

- the URL decides: ``http://host:port`` is plaintext; ``https://host:port`` is TLS and needs a CA file
  (``--tls-ca``), and a CA file needs ``https://``; a client certificate (mutual TLS) needs its key and a CA;
- the token file holds a bearer token (``roster auth token`` makes one), sent as ``authorization: Bearer …`` with
  every call, re-read when the file changes, so a rotated token is used without a restart;
- the CA, certificate and key are read again for every new channel, so rotated certificates are presented on the
  next connection.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import grpc
import grpc.aio

from . import defaults
from .entries import parse_host_port
from .errors import RosterConfigError

log = logging.getLogger("roster_client")

PathLike = Union[str, "os.PathLike[str]"]
ChannelOptions = Sequence[Tuple[str, Union[int, str]]]


@dataclass(frozen=True)
class Endpoint:
    """A parsed server URL."""

    url: str
    """The URL as given, normalised: ``http://host:port`` or ``https://host:port``."""
    authority: str
    """``host:port``, what grpcio dials."""
    tls: bool


def parse_target(target: str) -> Endpoint:
    """Parses ``http://host:port`` or ``https://host:port`` (a trailing ``/`` is allowed)."""
    example = "give http://host:port (or https://host:port with a CA file), e.g. http://127.0.0.1:50051"
    lowered = target.lower()
    if lowered.startswith("http://"):
        tls, rest = False, target[len("http://") :]
    elif lowered.startswith("https://"):
        tls, rest = True, target[len("https://") :]
    else:
        raise RosterConfigError(f"target {target!r} has no http:// or https:// scheme; {example}")
    rest = rest[:-1] if rest.endswith("/") else rest
    if any(c in rest for c in "/?#@"):
        raise RosterConfigError(f"target {target!r} is not scheme://host:port (no path or user); {example}")
    try:
        authority = parse_host_port(rest)
    except ValueError as e:
        raise RosterConfigError(f"target {target!r} {e}; {example}") from None
    return Endpoint(f"{'https' if tls else 'http'}://{authority}", authority, tls)


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RosterConfigError(f"{what} {path}: cannot be read ({e.strerror or e})") from None
    if not data.strip():
        raise RosterConfigError(f"{what} {path} is empty")
    return data


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for ``https://`` targets: the CA that signed the server's certificate, and optionally a client
    certificate and key for mutual TLS."""

    ca: Path
    cert: Optional[Path] = None
    key: Optional[Path] = None

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the files as they are now."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "CA file (tls_ca)"),
            private_key=_read(self.key, "client key (tls_key)") if self.key else None,
            certificate_chain=_read(self.cert, "client certificate (tls_cert)") if self.cert else None,
        )


def tls_files(
    endpoint: Endpoint, ca: Optional[PathLike], cert: Optional[PathLike], key: Optional[PathLike]
) -> Optional[TlsFiles]:
    """Checks the TLS settings against the URL, as the CLI does; the files are read once now to fail early."""
    if endpoint.tls and ca is None:
        raise RosterConfigError(
            f"target {endpoint.url} asks for TLS: give tls_ca, the PEM file of the CA that signed the server's "
            "certificate (the CLI's --tls-ca / ROSTER_TLS_CA)"
        )
    if not endpoint.tls and (ca or cert or key):
        raise RosterConfigError(
            f"tls_ca/tls_cert/tls_key were given but target {endpoint.url} is plaintext: use https:// to call the "
            "server over TLS"
        )
    if (cert is None) != (key is None):
        raise RosterConfigError("tls_cert and tls_key go together: give both for mutual TLS, or neither")
    if ca is None:
        return None
    files = TlsFiles(Path(ca), Path(cert) if cert else None, Path(key) if key else None)
    files.credentials()
    return files


class TokenFile:
    """A bearer token kept in a file, re-read when the file changes (a failed re-read keeps the last token and
    logs why)."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._stamp: Optional[Tuple[int, int, int]] = None
        self._token = ""
        self._reload(first=True)

    def _reload(self, first: bool = False) -> None:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if stamp == self._stamp:
                return
            token = _read(self.path, "token file (token_file)").decode("utf-8").strip()
            if any(c.isspace() for c in token):
                raise RosterConfigError(f"token file {self.path} holds more than one word; it holds one token")
        except (OSError, RosterConfigError, UnicodeDecodeError) as e:
            if first:
                raise RosterConfigError(
                    f"token file {self.path}: {e}; make a token with `roster auth token` and write it there"
                ) from None
            log.warning("token file %s cannot be read again (%s); still sending the token read before", self.path, e)
            return
        self._stamp, self._token = stamp, token

    def metadata(self) -> Tuple[str, str]:
        """The ``authorization`` header, from the file as it is now."""
        self._reload()
        return ("authorization", f"Bearer {self._token}")


@dataclass(frozen=True)
class Connection:
    """Everything needed to make a channel to one server; channels are made afresh by :meth:`channel` and
    :meth:`aio_channel` (TLS files read again each time)."""

    endpoint: Endpoint
    tls: Optional[TlsFiles]
    token: Optional[TokenFile]
    options: Tuple[Tuple[str, Union[int, str]], ...]

    @classmethod
    def make(
        cls,
        target: str,
        tls_ca: Optional[PathLike],
        tls_cert: Optional[PathLike],
        tls_key: Optional[PathLike],
        token_file: Optional[PathLike],
        options: ChannelOptions = (),
    ) -> Connection:
        endpoint = parse_target(target)
        return cls(
            endpoint,
            tls_files(endpoint, tls_ca, tls_cert, tls_key),
            TokenFile(token_file) if token_file is not None else None,
            tuple(defaults.CHANNEL_OPTIONS) + tuple(options),
        )

    def metadata(self) -> Tuple[Tuple[str, str], ...]:
        """Metadata every call carries: the bearer token, if any."""
        return (self.token.metadata(),) if self.token else ()

    def channel(self) -> grpc.Channel:
        if self.tls:
            return grpc.secure_channel(self.endpoint.authority, self.tls.credentials(), options=self.options)
        return grpc.insecure_channel(self.endpoint.authority, options=self.options)

    def aio_channel(self) -> grpc.aio.Channel:
        if self.tls:
            return grpc.aio.secure_channel(self.endpoint.authority, self.tls.credentials(), options=self.options)
        return grpc.aio.insecure_channel(self.endpoint.authority, options=self.options)
