"""Helpers for the workflow end-to-end tests and the fusion benchmark (no pytest here).

A ``Processor`` is a real ``processor`` subprocess hosting one or more function
folders (repeated ``--config``), with a platform.yaml on loopback ports that can
name a front door (``fusion.frontDoor.listenAddress``) and remote addresses
(``fusion.functionAddresses``). ``function_folder`` lays out a function the way
a user would: its own folder with ``function.yaml`` and its handler module, so
several functions in one processor each keep their own handler directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
import yaml

from test.support import free_port, platform_config, stop_process, wait_ready

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "test" / "functions"
CHAIN = ROOT / "examples" / "chain"
CHAIN_STEPS = ("transpose", "grayscale", "thumbnail")


def function_yaml(name: str, port: int, *, handler: str | None = None,
                  workflow: dict[str, Any] | None = None, workers: int = 1,
                  env: dict[str, str] | None = None, http_attributes: dict[str, Any] | None = None,
                  runtime_attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A function.yaml (dict) with one http trigger on 127.0.0.1:port; a handler or a
    workflow."""
    attributes = {"port": port, **(http_attributes or {})}
    spec: dict[str, Any] = {
        "runtime": "python:3.11", "eventTimeout": "30s",
        "triggers": {"http": {"kind": "http", "numWorkers": workers, "url": f"127.0.0.1:{port}",
                              "attributes": attributes}},
    }
    if handler is not None:
        spec["handler"] = handler
    if workflow is not None:
        spec["workflow"] = workflow
    if env:
        spec["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if runtime_attributes:
        spec["runtimeAttributes"] = runtime_attributes
    return {"apiVersion": "nuclio.io/v1", "kind": "NuclioFunction",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def function_folder(parent: Path, config: dict[str, Any], module: str | None = None) -> Path:
    """``parent/<name>/function.yaml`` (+ ``test/functions/<module>.py`` copied beside it)."""
    folder = parent / config["metadata"]["name"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "function.yaml").write_text(yaml.safe_dump(config))
    if module is not None:
        shutil.copy(FUNCTIONS / f"{module}.py", folder / f"{module}.py")
    return folder / "function.yaml"


def chain_copy(parent: Path, workers: int = 1) -> dict[str, int]:
    """examples/chain copied under ``parent`` with free loopback ports; name -> port."""
    ports: dict[str, int] = {}
    for name in (*CHAIN_STEPS, "chain"):
        folder = parent / name
        folder.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load((CHAIN / name / "function.yaml").read_text())
        http = config["spec"]["triggers"]["http"]
        ports[name] = http["attributes"]["port"] = free_port()
        http["url"] = f"127.0.0.1:{ports[name]}"
        if name != "chain":
            http["numWorkers"] = workers
            shutil.copy(CHAIN / name / "main.py", folder / "main.py")
        (folder / "function.yaml").write_text(yaml.safe_dump(config))
    return ports


class Processor:
    """A real processor hosting ``configs`` (files or folders), stopped by ``stop()``."""

    def __init__(self, configs: list[Path], workdir: Path, *, front_door: bool = False,
                 addresses: dict[str, str] | None = None, env: dict[str, str] | None = None,
                 level: str = "info") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.health_port, self.metrics_port = free_port(), free_port()
        self.front_door_port = free_port() if front_door else None
        platform = platform_config(self.health_port, self.metrics_port, function_level=level)
        fusion: dict[str, Any] = {}
        if self.front_door_port is not None:
            fusion["frontDoor"] = {"listenAddress": f"127.0.0.1:{self.front_door_port}"}
        if addresses:
            fusion["functionAddresses"] = addresses
        if fusion:
            platform["fusion"] = fusion
        self.platform_path = workdir / "platform.yaml"
        self.platform_path.write_text(yaml.safe_dump(platform))
        args: list[str] = []
        for config in configs:
            args += ["--config", str(config)]
        self.log_path = workdir / "processor.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*processor_args(), *args, "--platform-config", str(self.platform_path),
             "--listen-host", "127.0.0.1"],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})})

    @property
    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def front_door(self, name: str, path: str = "") -> str:
        assert self.front_door_port is not None, "started without a front door"
        return f"http://127.0.0.1:{self.front_door_port}/function/{name}{path}"

    def wait_ready(self, timeout: float = 40.0) -> Processor:
        wait_ready(self.proc, self.health_port, lambda: self.logs, timeout)
        return self

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def stop(self) -> int:
        stop_process(self.proc, 15.0)
        self._log.close()
        return self.proc.returncode


def processor_args() -> list[str]:
    return [sys.executable, "-m", "processor.cli"]


def sample_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A deterministic photo-like JPEG (gradients and texture), made with Pillow."""
    import io

    from PIL import Image

    image = Image.linear_gradient("L").resize((width, height))
    texture = Image.effect_mandelbrot((width, height), (-2.0, -1.2, 0.8, 1.2), 100)
    rgb = Image.merge("RGB", (image, texture, image.rotate(90).resize((width, height))))
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=90)
    return out.getvalue()
