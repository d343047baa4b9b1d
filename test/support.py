"""Helpers shared by the tests and the benchmarks (no pytest imports here)."""

from __future__ import annotations

import signal
import socket
import subprocess
from typing import Any


def free_port() -> int:
    """A loopback port the OS says is free now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def platform_config(health_port: int, metrics_port: int, *, health_address: str | None = None,
                    function_level: str = "debug") -> dict[str, Any]:
    """Nuclio's platform.yaml shape with health and metrics on loopback ports."""
    return {
        "healthCheck": {"enabled": True,
                        "listenAddress": health_address or f"127.0.0.1:{health_port}"},
        "metrics": {"sinks": {"prom": {"kind": "prometheusPull",
                                       "url": f"127.0.0.1:{metrics_port}"}},
                    "system": ["prom"], "functions": ["prom"]},
        "logger": {"sinks": {"stdout": {"kind": "stdout"}},
                   "system": [{"level": "info", "sink": "stdout"}],
                   "functions": [{"level": function_level, "sink": "stdout"}]},
    }


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM first (a processor drains and stops its workers), SIGKILL after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()
