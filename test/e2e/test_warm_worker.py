"""The warm process worker (``runtime.warm_worker``), seen from outside: a function's
worker behaves as a freshly started one would, and no interpreter is left behind when
none is needed or the config is refused."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import requests

from test.conftest import free_port, function_config, run_config_once

HANDLER = '''\
import os

import extra_mod


def handler(context, event):
    return {"extra": extra_mod.VALUE, "plain": os.environ.get("PLAIN"),
            "lang": os.environ.get("LANG")}
'''


def _children(pid: int) -> list[int]:
    """The processor's child processes, from /proc (Linux)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or not ours to read
    return found


def test_worker_gets_env_read_at_interpreter_start(start_processor, tmp_path: Path) -> None:
    """PYTHONPATH (read when the interpreter starts) in spec.env: the worker must be an
    interpreter started with it, so the handler's import from that folder works."""
    extra, function_dir = tmp_path / "extra", tmp_path / "fn"
    extra.mkdir()
    function_dir.mkdir()
    (extra / "extra_mod.py").write_text("VALUE = 'from-extra'\n")
    (function_dir / "envcheck.py").write_text(HANDLER)
    port = free_port()
    config = function_config("envcheck:handler", port=port, env=[
        {"name": "PYTHONPATH", "value": str(extra)}, {"name": "PLAIN", "value": "yes"},
        {"name": "LANG", "value": "C.UTF-8"}])
    start_processor(config, function_dir=function_dir)
    answer = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"extra": "from-extra", "plain": "yes", "lang": "C.UTF-8"}


def test_thread_kind_keeps_no_worker_process(start_processor) -> None:
    port = free_port()
    running = start_processor(function_config(
        "hello:handler", port=port, runtime_attributes={"workerKind": "thread"}))
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    assert _children(running.proc.pid) == []


def test_process_kind_has_exactly_its_workers(start_processor) -> None:
    port = free_port()
    running = start_processor(function_config(
        "hello:handler", port=port, workers=2, runtime_attributes={"workerKind": "process"}))
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    assert len(_children(running.proc.pid)) == 2


def test_refused_config_leaves_no_interpreter(tmp_path: Path) -> None:
    marker = f"WARM_WORKER_TEST_{uuid.uuid4().hex}"
    os.environ[marker] = "1"  # inherited by the processor and any worker it starts
    try:
        done = run_config_once(tmp_path, function_config(
            "hello:handler", port=free_port(), workers=0))
    finally:
        del os.environ[marker]
    assert done.returncode == 2, done.stdout + done.stderr
    deadline = time.monotonic() + 5
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_with(marker) == []
