"""Shared test helpers: free loopback ports and a real ``processor`` subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from test.envoy_support import RunningUpstream
from test.support import free_port, platform_config, stop_process

__all__ = ["free_port", "function_config", "run_config_once", "run_processor_once"]

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "test" / "functions"


def processor_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "processor.cli", *args]


def function_config(handler: str, *, triggers: dict[str, Any] | None = None,
                    port: int | None = None, workers: int = 1,
                    runtime_attributes: dict[str, Any] | None = None,
                    event_timeout: str | None = None, env: list[dict[str, Any]] | None = None,
                    name: str = "test-fn", http_extra: dict[str, Any] | None = None,
                    ) -> dict[str, Any]:
    """A function.yaml as a dict; one http trigger on 127.0.0.1:port unless told otherwise."""
    spec: dict[str, Any] = {"runtime": "python:3.11", "handler": handler}
    if triggers is None:
        trigger: dict[str, Any] = {"kind": "http", "numWorkers": workers,
                                   "url": f"127.0.0.1:{port}"}
        trigger.update(http_extra or {})
        triggers = {"http": trigger}
    spec["triggers"] = triggers
    if runtime_attributes:
        spec["runtimeAttributes"] = runtime_attributes
    if event_timeout:
        spec["eventTimeout"] = event_timeout
    if env:
        spec["env"] = env
    return {"apiVersion": "nuclio.io/v1", "kind": "NuclioFunction",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


class RunningProcessor:
    """A real ``processor`` process on loopback ports, with its output in a file."""

    def __init__(self, config: dict[str, Any] | str, *, function_dir: Path | None = FUNCTIONS,
                 workdir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.health_port = free_port()
        self.metrics_port = free_port()
        if isinstance(config, dict):
            self.config_path = workdir / "function.yaml"
            self.config_path.write_text(yaml.safe_dump(config))
        else:
            self.config_path = Path(config)
        platform = platform_config(self.health_port, self.metrics_port)
        self.platform_path = workdir / "platform.yaml"
        self.platform_path.write_text(yaml.safe_dump(platform))
        args = ["--config", str(self.config_path), "--platform-config", str(self.platform_path)]
        if function_dir is not None:
            args += ["--function-dir", str(function_dir)]
        self.log_path = workdir / "processor.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(processor_command(*args, *extra_args), cwd=ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    @property
    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, port: int, path: str = "/") -> str:
        return f"http://127.0.0.1:{port}{path}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"processor exited with {self.proc.returncode}:\n{self.logs}")
            try:
                if requests.get(self.url(self.health_port, "/ready"), timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"processor not ready within {timeout}s:\n{self.logs}")

    def metrics(self) -> str:
        return requests.get(self.url(self.metrics_port, "/metrics"), timeout=5).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include ``labels``."""
        total, found = 0.0, False
        for line in self.metrics().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
                found = True
        assert found, f"metric {name} {labels} not exported"
        return total

    def stop(self, timeout: float = 15.0) -> int:
        stop_process(self.proc, timeout)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_processor(tmp_path: Path) -> Iterator[Any]:
    """Starts processors on demand and always stops them at the end of the test."""
    started: list[RunningProcessor] = []

    def start(config: dict[str, Any] | str, *, ready: bool = True,
              function_dir: Path | None = FUNCTIONS, extra_args: tuple[str, ...] = ()
              ) -> RunningProcessor:
        workdir = Path(tempfile.mkdtemp(dir=tmp_path))
        running = RunningProcessor(config, function_dir=function_dir, workdir=workdir,
                                   extra_args=extra_args)
        started.append(running)
        if ready:
            running.wait_ready()
        return running

    yield start
    for running in started:
        running.stop()


def run_processor_once(args: list[str], timeout: float = 30.0,
                       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``processor`` to completion (bad configs, jobs), with extra ``env``."""
    env = {**os.environ, **(env or {})}
    return subprocess.run(processor_command(*args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def run_config_once(workdir: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Runs ``processor`` on ``config`` (a function.yaml as a dict, handlers from
    test/functions, health and metrics on free loopback ports) to completion: the way
    the bad-config tests check exit codes and messages."""
    (workdir / "function.yaml").write_text(yaml.safe_dump(config))
    (workdir / "platform.yaml").write_text(yaml.safe_dump(platform_config(free_port(),
                                                                          free_port())))
    return run_processor_once(["--config", str(workdir / "function.yaml"),
                               "--platform-config", str(workdir / "platform.yaml"),
                               "--function-dir", str(FUNCTIONS), "--listen-host", "127.0.0.1"])


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUpstream]:
    """The aiohttp echo app behind Envoy (test/envoy_support.py), one per test module."""
    running = RunningUpstream(tmp_path_factory.mktemp("upstream"))
    yield running
    running.stop()
