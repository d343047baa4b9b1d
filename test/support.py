"""Helpers shared by the tests and the benchmarks (no pytest imports here)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

# Ports handed out by this process: the OS may offer a port again as soon as the probe
# socket closes, so two free_port() calls for one test (a sink and the metrics server, say)
# could get the same number and the processor would rightly refuse the config.
_given: set[int] = set()


def free_port() -> int:
    """A loopback port the OS says is free now (another process may take it later), never
    one this process handed out before."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port


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


def wait_for(check: Callable[[], Any], timeout: float, what: str,
             logs: Callable[[], str] = lambda: "") -> Any:
    """Polls ``check`` every 0.1 s until it returns something truthy (returned), or fails
    after ``timeout`` naming ``what``, its last value and the tail of ``logs()``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})\n"
                         f"{logs()[-4000:]}")


def wait_ready(proc: subprocess.Popen[Any], health_port: int, logs: Callable[[], str],
               timeout: float = 40.0) -> None:
    """Until ``/ready`` on the health port answers 200; fails with the log tail when the
    processor exits first or the time runs out."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"processor exited with {proc.returncode}:\n{logs()[-4000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{health_port}/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"processor not ready within {timeout}s:\n{logs()[-4000:]}")
