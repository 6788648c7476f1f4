"""Processes and sockets the tests talk to: real roster-server processes (started, killed with SIGKILL,
restarted on the same port) and a TCP server that accepts and resets every connection.

Every wait is bounded: a server that does not say it is serving within STARTUP_S fails the test with its log.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

STARTUP_S = 10.0
STOP_S = 15.0
WAIT_S = 15.0
_SERVING = re.compile(r"roster-server serving listen=(\S+):(\d+)")


def bin_dir() -> Path:
    """Where roster's binaries are: $ROSTER_BIN_DIR, default the repository's target/debug."""
    default = Path(__file__).resolve().parents[2] / "target" / "debug"
    return Path(os.environ.get("ROSTER_BIN_DIR", default))


def binary(name: str, bins: Optional[Path] = None) -> Path:
    path = (bins or bin_dir()) / name
    if not os.access(path, os.X_OK):
        raise AssertionError(
            f"{path} is missing or not executable: build roster (cargo build) or set ROSTER_BIN_DIR to the "
            "directory holding roster-server and roster"
        )
    return path


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Polls ``condition`` every 10 ms until it holds; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.01)


class RosterServer:
    """One roster-server process on loopback, with its own data directory."""

    def __init__(self, bins: Path, data_dir: Path, extra: Sequence[str] = ()) -> None:
        self.bins = bins
        self.data_dir = data_dir
        self.extra = list(extra)
        self.port: Optional[int] = None
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.starts = 0

    @property
    def address(self) -> str:
        assert self.port is not None, "the server has not started"
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        scheme = "https" if "--tls-cert" in self.extra else "http"
        return f"{scheme}://{self.address}"

    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log{self.starts}"

    def start(self) -> None:
        """Starts the server (on the port it had, after the first start) and waits until it serves."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        listen = f"127.0.0.1:{self.port or 0}"
        log = self.log_path()
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [str(binary("roster-server", self.bins)), "--listen", listen, "--data-dir", str(self.data_dir),
                 "--metrics-listen", "off", *self.extra],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            match = _SERVING.search(log.read_text(errors="replace"))
            if match:
                self.port = int(match.group(2))
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.005)
        self.kill()
        raise AssertionError(f"roster-server did not start serving within {STARTUP_S} s:\n{log.read_text()}")

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone (its sockets closed by the kernel)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_S)

    def stop(self) -> None:
        """SIGTERM (streams end with UNAVAILABLE and a pushback, S6); SIGKILL if it does not exit in time."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                self.kill()


class ResetServer:
    """Accepts every TCP connection and resets it at once (SO_LINGER 0), recording when each arrived."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted: List[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="reset-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.accepted.append(time.monotonic())
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class FaultProxy:
    """A TCP proxy to ``upstream`` on loopback, which breaks the connections open now, not later ones:
    :meth:`freeze` stops forwarding on them and leaves them open (a half-open connection, as after a host crash or
    a network partition); :meth:`garble` flips every byte the server sends on them from then on."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._frozen: List[socket.socket] = []
        self._garbled: List[socket.socket] = []
        self._open: List[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except socket.timeout:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            with self._lock:
                self.connections += 1
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.1)
        while not self._stop.is_set():
            with self._lock:
                frozen = source in self._frozen
            if frozen:
                self._stop.wait(0.1)
                continue
            try:
                data = source.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            with self._lock:
                if source in self._garbled:
                    data = bytes(b ^ 0xFF for b in data)
            try:
                sink.sendall(data)
            except OSError:
                return

    def freeze(self) -> None:
        with self._lock:
            self._frozen = list(self._open)

    def garble(self) -> None:
        with self._lock:
            self._garbled = list(self._open)

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        with self._lock:
            for s in self._open:
                s.close()
        self.sock.close()
