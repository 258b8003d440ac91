"""A real mosquitto broker for tests, on a free loopback port, with its own config.

Tests never touch a system broker on 1883: each ``Mosquitto`` writes a config into its
own temporary directory (listener 127.0.0.1 on a free port, anonymous access,
persistence into that directory, log to a file there) and runs ``mosquitto -c`` on it.

``stop()`` sends SIGTERM (mosquitto then writes its persistence file) and ``start()``
brings the broker back on the *same* port with the same store, so an outage test sees
what a station sees when the district broker restarts: persistent sessions, their
subscriptions and their queued QoS 1 messages survive.

    with Mosquitto() as broker:
        client.connect("127.0.0.1", broker.port)
        broker.stop(); ...; broker.start()
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"


class MosquittoMissing(RuntimeError):
    """No mosquitto binary: `make setup` installs it (apt-get install mosquitto)."""


class MosquittoFailed(RuntimeError):
    """mosquitto exited or did not accept connections in time; the message has its log."""


def find_mosquitto() -> str:
    for candidate in ("/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise MosquittoMissing(
        "mosquitto was not found at /usr/sbin/mosquitto nor on PATH; run `make setup` "
        "(it installs mosquitto with apt-get) or `sudo apt-get install mosquitto`"
    )


def free_port() -> int:
    """A port nobody listens on right now (the kernel's choice for an ephemeral bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """One mosquitto process on 127.0.0.1:``port``; a context manager that always stops it."""

    def __init__(
        self,
        port: int | None = None,
        start_timeout: float = 10.0,
        *,
        max_queued_messages: int = 10000,
    ) -> None:
        self.binary = find_mosquitto()
        self.max_queued_messages = max_queued_messages
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="lantian-mosquitto-")
        self.dir = Path(self._tmp.name)
        self.log_path = self.dir / "mosquitto.log"
        self.config_path = self.dir / "mosquitto.conf"
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def host(self) -> str:
        return HOST

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.dir}/",
            "persistence_file mosquitto.db",
            "autosave_interval 1",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            # Outage tests queue more than the default 1000 messages per client only if
            # they run long; keep the queue limit explicit and large (the ingest bench
            # queues its whole stream per session: it asks for more).
            f"max_queued_messages {self.max_queued_messages}",
        ]
        if os.geteuid() == 0:
            # Run as root, mosquitto would switch to the `mosquitto` user, which cannot
            # write this temp dir; stay who we are.
            lines.append(f"user {pwd.getpwuid(os.getuid()).pw_name}")
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Mosquitto:
        """Start (or restart, on the same port) and wait until it accepts connections."""
        if self.is_running():
            return self
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                self.process = None
                raise MosquittoFailed(
                    f"mosquitto exited at start (port {self.port}):\n{err}\n{self.log()}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise MosquittoFailed(
                    f"mosquitto did not accept connections on {self.port} within "
                    f"{self.start_timeout}s:\n{self.log()}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), wait, SIGKILL if it hangs."""
        proc = self.process
        if proc is None:
            return
        self.process = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc.stderr is not None:
            proc.stderr.close()

    def close(self) -> None:
        """Stop and remove the temporary directory."""
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
