"""Helpers for the fusion tests: several function folders, one real processor.

``write_functions`` lays out ``<dir>/<name>/function.yaml`` per function (handlers come
from test/functions through ``--function-dir``); ``start_fused`` runs a processor over
that directory with a platform.yaml that may name a front door and remote addresses.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from test.conftest import FUNCTIONS, ROOT, processor_command
from test.support import free_port, platform_config, stop_process, wait_ready


def fn(name: str, handler: str, *, kind: str = "auto", workers: int = 1,
       port: int | None = None, env: dict[str, str] | None = None,
       availability_ms: int | None = None, event_timeout: str | None = None,
       expose_tracebacks: bool = False) -> dict[str, Any]:
    """A function.yaml (dict) with one http trigger on a free loopback port."""
    port = port or free_port()
    trigger: dict[str, Any] = {"kind": "http", "numWorkers": workers,
                               "url": f"127.0.0.1:{port}"}
    if availability_ms is not None:
        trigger["workerAvailabilityTimeoutMilliseconds"] = availability_ms
    spec: dict[str, Any] = {"runtime": "python:3.11", "handler": handler,
                            "triggers": {"http": trigger},
                            "runtimeAttributes": {"workerKind": kind,
                                                  "exposeTracebacks": expose_tracebacks}}
    if env:
        spec["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if event_timeout:
        spec["eventTimeout"] = event_timeout
    return {"apiVersion": "nuclio.io/v1", "kind": "NuclioFunction",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def port_of(config: dict[str, Any]) -> int:
    return int(config["spec"]["triggers"]["http"]["url"].rsplit(":", 1)[1])


def write_functions(directory: Path, configs: list[dict[str, Any]]) -> Path:
    for config in configs:
        folder = directory / config["metadata"]["name"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "function.yaml").write_text(yaml.safe_dump(config))
    return directory


def fusion_platform(directory: Path, *, front_door: int | None = None,
                    addresses: dict[str, str] | None = None, max_depth: int | None = None,
                    system_level: str = "debug") -> Path:
    """platform.yaml on loopback; the front door's async store in ``directory``."""
    platform = platform_config(free_port(), free_port())
    platform["logger"]["system"] = [{"level": system_level, "sink": "stdout"}]
    fusion: dict[str, Any] = {}
    if front_door is not None:
        fusion["frontDoor"] = {"listenAddress": f"127.0.0.1:{front_door}",
                               "async": {"directory": str(directory / "async-store"),
                                         "retry": {"maxAttempts": 1}}}
    if addresses:
        fusion["functionAddresses"] = addresses
    if max_depth is not None:
        fusion["maxCallDepth"] = max_depth
    platform["fusion"] = fusion
    path = directory / "platform.yaml"
    path.write_text(yaml.safe_dump(platform))
    return path


def processor_args(configs: list[Path], platform: Path,
                   function_dir: Path | None = FUNCTIONS) -> list[str]:
    """``--function-dir`` test/functions unless None (each handler beside its yaml)."""
    args: list[str] = []
    for config in configs:
        args += ["--config", str(config)]
    if function_dir is not None:
        args += ["--function-dir", str(function_dir)]
    return [*args, "--platform-config", str(platform), "--listen-host", "127.0.0.1"]


def health_port(platform: Path) -> int:
    data = yaml.safe_load(platform.read_text())
    return int(data["healthCheck"]["listenAddress"].rsplit(":", 1)[1])


def metrics_port(platform: Path) -> int:
    data = yaml.safe_load(platform.read_text())
    return int(data["metrics"]["sinks"]["prom"]["url"].rsplit(":", 1)[1])


def log_records(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class Fused:
    """A real processor over ``configs`` (files or directories), stopped by ``stop``."""

    def __init__(self, configs: list[Path], platform: Path, workdir: Path,
                 env: dict[str, str] | None = None,
                 function_dir: Path | None = FUNCTIONS) -> None:
        self.platform = platform
        self.health_port = health_port(platform)
        self.metrics_port = metrics_port(platform)
        self.log_path = workdir / f"processor-{free_port()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(processor_command(*processor_args(configs, platform,
                                                                       function_dir)),
                                     cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})

    @property
    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 40.0) -> Fused:
        wait_ready(self.proc, self.health_port, lambda: self.logs, timeout)
        return self

    def stop(self) -> int:
        stop_process(self.proc, 15.0)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_fused(tmp_path: Path) -> Iterator[Callable[..., Fused]]:
    started: list[Fused] = []

    def start(configs: list[Path], platform: Path, *, env: dict[str, str] | None = None,
              ready: bool = True) -> Fused:
        running = Fused(configs, platform, tmp_path, env)
        started.append(running)
        return running.wait_ready() if ready else running

    yield start
    for running in started:
        running.stop()
