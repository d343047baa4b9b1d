"""The rendered ConfigMap is what the pod runs: start a real processor from its
function.yaml, platform.yaml and handler file (laid out as the pod mounts them) and
serve requests; and, for a kube-mode cron trigger, run the CronJob's own command
(``processor kube invoke``) against it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from processor.kube.render import RenderOptions, render
from test.support import free_port, platform_config, stop_process

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _from_config_map(tmp_path: Path, function: dict[str, Any], platform: dict[str, Any],
                     function_dir: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Renders, then writes the ConfigMap's files where the pod would see them."""
    (tmp_path / "src").mkdir()
    source = tmp_path / "src" / "function.yaml"
    source.write_text(yaml.safe_dump(function))
    (tmp_path / "src" / "platform.yaml").write_text(yaml.safe_dump(platform))
    rendered = render(str(source), str(tmp_path / "src" / "platform.yaml"),
                      RenderOptions(function_dir=str(function_dir)))
    config_map = rendered.objects[0]
    assert config_map["kind"] == "ConfigMap"
    pod = tmp_path / "pod"
    pod.mkdir()
    for key, text in config_map["data"].items():
        (pod / key).write_text(text)
    return pod, rendered.objects


def _start(pod: Path, health: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "--config", str(pod / "processor.yaml"),
         "--platform-config", str(pod / "platform.yaml"), "--function-dir", str(pod),
         "--listen-host", "127.0.0.1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"processor exited {proc.returncode}: "
                                 f"{proc.stdout.read().decode() if proc.stdout else ''}")
        try:
            if requests.get(f"http://127.0.0.1:{health}/ready", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.05)
    stop_process(proc)
    raise AssertionError("processor from the rendered ConfigMap never got ready")


def test_hello_config_map_serves(tmp_path: Path) -> None:
    port, health, metrics = free_port(), free_port(), free_port()
    function = yaml.safe_load((EXAMPLES / "hello/function.yaml").read_text())
    function["spec"]["triggers"]["http"]["attributes"]["port"] = port
    pod, objects = _from_config_map(tmp_path, function, platform_config(health, metrics),
                                    EXAMPLES / "hello")
    assert (pod / "main.py").read_text() == (EXAMPLES / "hello/main.py").read_text()
    container = objects[1]["spec"]["template"]["spec"]["containers"][0]
    assert {p["containerPort"] for p in container["ports"]} == {port, health, metrics}
    proc = _start(pod, health)
    try:
        answer = requests.get(f"http://127.0.0.1:{port}/?name=kube", timeout=5)
        assert answer.status_code == 200 and answer.text == "Hello, kube!\n"
        assert "nuclio_processor_handled_events_total" in requests.get(
            f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
    finally:
        stop_process(proc)
    assert proc.returncode == 0


def test_kube_cron_invoke_reaches_the_function(tmp_path: Path) -> None:
    port, health, metrics = free_port(), free_port(), free_port()
    function = yaml.safe_load((EXAMPLES / "cron/function.yaml").read_text())
    function["spec"]["triggers"]["http"]["attributes"]["port"] = port
    function["spec"]["triggers"]["hourly"]["attributes"]["event"]["path"] = "/tick?n=1"
    platform = {**platform_config(health, metrics), "cronTriggerCreationMode": "kube"}
    pod, objects = _from_config_map(tmp_path, function, platform, EXAMPLES / "cron")
    cron = next(o for o in objects if o["kind"] == "CronJob")
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    proc = _start(pod, health)
    try:
        # The CronJob's command, pointed at this processor instead of the Service.
        url_at = args.index("--url") + 1
        command = [*args[1:url_at], f"http://127.0.0.1:{port}", *args[url_at + 1:]]
        command[command.index("--config") + 1] = str(pod / "processor.yaml")
        tick = subprocess.run([sys.executable, "-m", "processor.cli", *command], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)
        assert tick.returncode == 0, tick.stderr
        assert "POST /tick?n=1 -> 200" in tick.stderr
        # The handler saw Nuclio's header and the trigger's JSON body.
        assert '"origin":"cron"' in tick.stderr, tick.stderr
        bad = subprocess.run([sys.executable, "-m", "processor.cli", *command[:-2], "--url",
                              f"http://127.0.0.1:{free_port()}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
        assert bad.returncode == 1, bad.stderr  # nobody listens: the Job's pod fails
    finally:
        stop_process(proc)
        output = proc.stdout.read().decode() if proc.stdout else ""
    # The processor itself did not run the (disabled) cron trigger.
    assert "Cron trigger started" not in output
    assert os.path.exists(pod / "processor.yaml")
