"""Helpers for the status page tests: a processor with our own platform.yaml (the
dashboard keys, fixed ports for a restart), and headless Chromium driven through the
DevTools protocol (no browser download, no Playwright: Debian's chromium + websockets)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
import yaml
from websockets.sync.client import connect

from test.conftest import FUNCTIONS, ROOT, processor_command
from test.support import free_port, platform_config, stop_process

CHROMIUM = "/usr/bin/chromium"


class Processor:
    """A processor with a platform.yaml of our own (the dashboard keys)."""

    def __init__(self, tmp: Path, config: dict[str, Any], dashboard: dict[str, Any] | None,
                 *, health: int | None = None, metrics: int | None = None) -> None:
        self.health = health or free_port()
        self.metrics_port = metrics or free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        platform = platform_config(self.health, self.metrics_port)
        if dashboard is not None:
            platform["healthCheck"]["dashboard"] = dashboard
        (tmp / "function.yaml").write_text(yaml.safe_dump(config))
        (tmp / "platform.yaml").write_text(yaml.safe_dump(platform))
        self.log = open(tmp / "processor.log", "wb")  # noqa: SIM115 - closed in stop()
        self.log_path = tmp / "processor.log"
        self.proc = subprocess.Popen(
            processor_command("--config", str(tmp / "function.yaml"), "--platform-config",
                              str(tmp / "platform.yaml"), "--function-dir", str(FUNCTIONS)),
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if requests.get(self.url("/ready"), timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError("not ready:\n" + self.log_path.read_text())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.health}{path}"

    def status(self) -> dict[str, Any]:
        r = requests.get(self.url("/api/status"), timeout=5)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
        return r.json()

    def metric(self, name: str, **labels: str) -> float:
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        total, found = 0.0, False
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line
                                                   for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
                found = True
        assert found, (name, labels)
        return total

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()



class Chromium:
    """One headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, profile: Path, *, width: int = 1280, height: int = 900) -> None:
        binary = shutil.which(CHROMIUM) or shutil.which("chromium")
        if binary is None:
            raise AssertionError(f"Chromium not found at {CHROMIUM}: apt-get install chromium "
                                 "(see the Makefile's install-test target)")
        port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             "--remote-debugging-address=127.0.0.1", f"--window-size={width},{height}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = self._page_target(port)
        self._connection = connect(target, max_size=64 << 20, open_timeout=10)
        self._ws = self._connection.__enter__()
        self._id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def _page_target(self, port: int) -> str:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"chromium exited with {self.proc.returncode}")
            try:
                for target in requests.get(f"http://127.0.0.1:{port}/json/list",
                                           timeout=1).json():
                    if target.get("type") == "page":
                        return str(target["webSocketDebuggerUrl"])
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError("chromium's DevTools endpoint did not come up")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=30))
            if message.get("id") == self._id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def console_errors(self) -> list[dict[str, Any]]:
        """Console errors, uncaught exceptions and error-level log entries so far."""
        self.evaluate("1")  # drain pending events
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown" or (
                    method == "Runtime.consoleAPICalled" and params.get("type") == "error") or (
                    method == "Log.entryAdded" and params["entry"].get("level") == "error"):
                errors.append(event)
        return errors

    def screenshot(self, path: Path) -> bytes:
        import base64

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self._connection.__exit__(None, None, None)
        finally:
            stop_process(self.proc, 5)
