"""Cold start of the processor (launch -> first 200 on ``/ready``) against the import
of ``aiohttp.web`` alone, and the floor that bounds it.

The target (issue 15) is at most 1.2x ``python -c "import aiohttp.web"``. The floor
is the least a processor built on our stack imports before it can serve: its HTTP
parser (httptools, since the lean server; aiohttp's server before), uvloop, PyYAML
(function.yaml) and pydantic with one model (config validation), with the cyclic
collector paused as ``processor.cli`` pauses it. When
the floor alone is above the target, no trimming of our own modules can meet it.
Launches are interleaved (processor, import, floor, bare interpreter) so all four
see the same load; the ratios of the medians are the figures. The thread kind's cold
start is timed beside them, without a target: it needs no process worker, so it shows
what the warm worker (``runtime.warm_worker``, started before the config is read and
stopped when unused) costs a function that does not use it.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from test.bench.http_peers import Setup, launch, wait_ready
from test.support import stop_process

ROOT = Path(__file__).resolve().parents[2]
COLD_START_TARGET = 1.2
PACKAGES = ("processor", "fusion", "triggers", "sinks", "invocations", "media", "core",
            "runtime", "protos")
FLOOR = ("import gc; gc.disable()\n"
         "import httptools, uvloop, yaml, pydantic\n"
         "class Config(pydantic.BaseModel):\n"
         "    workers: int = pydantic.Field(1, ge=1)\n"
         "Config.model_validate({'workers': 2})\n")


def time_to_ready(workdir: Path, tag: str, kind: str = "process") -> float:
    """Seconds from launching the interpreter to the first 200 from /ready."""
    server = launch(Setup("cold start", kind, 1), workdir, tag)
    try:
        wait_ready(server, poll=0.002)
        return time.perf_counter() - server.launched_at
    finally:
        stop_process(server.proc)


def time_command(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


def cold_start(workdir: Path, launches: int) -> dict[str, Any]:
    """Launch -> /ready against the import of aiohttp.web alone and the floor.

    Like for like, both sides load compiled modules: aiohttp's ``.pyc`` were written by
    pip when it was installed, and so are ours in the image (``pip install`` of the
    wheel); a checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile our
    ~50 modules on every launch."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *PACKAGES], cwd=ROOT,
                   check=True)
    processor, thread, aiohttp_web, floor, bare = [], [], [], [], []
    for i in range(launches):
        processor.append(time_to_ready(workdir, f"cold-{i}"))
        thread.append(time_to_ready(workdir, f"cold-thread-{i}", "thread"))
        aiohttp_web.append(time_command([sys.executable, "-c", "import aiohttp.web"]))
        floor.append(time_command([sys.executable, "-c", FLOOR]))
        bare.append(time_command([sys.executable, "-c", "pass"]))
    median, reference = statistics.median(processor), statistics.median(aiohttp_web)
    ratio = median / reference
    return {"processor_s": processor, "processor_median_s": median,
            "import_aiohttp_web_s": aiohttp_web, "import_aiohttp_web_median_s": reference,
            "floor_s": floor, "floor_median_s": statistics.median(floor),
            "floor_ratio": statistics.median(floor) / reference,
            "bare_python_median_s": statistics.median(bare), "ratio": ratio,
            "thread_kind_s": thread, "thread_kind_median_s": statistics.median(thread),
            "thread_kind_ratio": statistics.median(thread) / reference,
            "target_ratio": COLD_START_TARGET, "pass": ratio <= COLD_START_TARGET}


def cold_start_lines(cold: dict[str, Any]) -> list[str]:
    """The report's lines, the summary lines last."""
    return [
        f"Cold start, process kind x1, launch -> first 200 on /ready "
        f"(median of {len(cold['processor_s'])}): {cold['processor_median_s']:.3f} s, "
        f"{cold['ratio']:.2f}x python -c 'import aiohttp.web' "
        f"({cold['import_aiohttp_web_median_s']:.3f} s; target <= {COLD_START_TARGET}x: "
        f"{'PASS' if cold['pass'] else 'FAIL'}; runs "
        f"{', '.join(f'{s:.3f}' for s in cold['processor_s'])})",
        f"  floor (httptools + uvloop + yaml + pydantic with one model, collector paused) "
        f"{cold['floor_median_s']:.3f} s, {cold['floor_ratio']:.2f}x; python -c pass "
        f"{cold['bare_python_median_s']:.3f} s",
        f"  thread kind x1 (no process worker; the warm one is stopped unused) "
        f"{cold['thread_kind_median_s']:.3f} s, {cold['thread_kind_ratio']:.2f}x",
    ]


def summary_lines(cold: dict[str, Any]) -> list[str]:
    return [f"cold_start: {cold['ratio']:.2f} (target {COLD_START_TARGET})",
            f"cold_start_floor: {cold['floor_ratio']:.2f} (no target)",
            f"cold_start_thread_kind: {cold['thread_kind_ratio']:.2f} (no target)"]
