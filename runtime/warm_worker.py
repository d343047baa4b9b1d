"""One process worker's interpreter started before the processor reads its config.

Why: a process worker's interpreter start and runtime imports (~80 ms on a small
machine) otherwise begin only once the config is parsed, and the first event cannot be
served before the worker is ready, so they sat on the path to ``/ready``. The worker
gets its settings (and its function's environment) over its socket when they are known;
until then it only waits. Only one is started: most functions have one worker.

A warm worker is used only where it is what a fresh spawn would be: when the
environment the function's worker should have differs from the one it was started with
only in variables that nothing reads when a process starts (the interpreter and the C
library read ``PYTHON*``, ``LD_*``, ``LC_*``, ``LANG``, ``LANGUAGE``, ``TZ``, ``MALLOC_*``
and ``GLIBC_*`` then). Otherwise, or when no process worker is needed, it is stopped.

It costs a function that needs no process worker (thread or async kind, a workflow) one
interpreter start on another core, stopped once the pools are built; on a one-core
machine that is worth turning off (``NUCLIO_WARM_WORKER=false``). Imports here are kept
to what the CLI has loaded anyway: this runs before anything else.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_AT_START = ("PYTHON", "LD_", "LC_", "MALLOC_", "GLIBC_")
_AT_START_NAMES = frozenset({"LANG", "LANGUAGE", "TZ"})

_OFF = frozenset({"false", "0", "no", "off"})

_warm: tuple[subprocess.Popen[bytes], socket.socket, dict[str, str]] | None = None


def worker_env(base: Mapping[str, str], own: Iterable[tuple[str, str]]) -> dict[str, str]:
    """A worker's environment: ``base`` with the function's ``own`` on top and the
    project root first on PYTHONPATH (so ``-m runtime.workers.process_main`` resolves)."""
    env = dict(base)
    env.update(own)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PROJECT_ROOT + (os.pathsep + path if path else "")
    return env


def spawn_worker(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """A worker interpreter on one end of a socket pair; it waits for its settings."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.workers.process_main", str(child.fileno())],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, env=env)
    finally:
        child.close()
    return proc, parent


def start() -> None:
    """Starts the warm worker with the processor's environment as it is now, unless
    ``NUCLIO_WARM_WORKER`` is ``false`` (or ``0``, ``no``, ``off``)."""
    global _warm
    if os.environ.get("NUCLIO_WARM_WORKER", "true").strip().lower() in _OFF:
        return
    if _warm is None:
        env = worker_env(os.environ, ())
        _warm = (*spawn_worker(env), env)


def _read_at_start(name: str) -> bool:
    return name in _AT_START_NAMES or name.startswith(_AT_START)


def take(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], socket.socket] | None:
    """The warm worker for a worker that should run with ``env``, if it can be that
    worker; else None (and the warm worker is stopped)."""
    global _warm
    if _warm is None:
        return None
    proc, sock, started = _warm
    _warm = None
    changed = {k for k in started.keys() | env.keys() if started.get(k) != env.get(k)}
    if proc.poll() is None and not any(_read_at_start(k) for k in changed):
        return proc, sock
    _stop(proc, sock)
    return None


def discard() -> None:
    """Stops the warm worker if nothing took it."""
    global _warm
    if _warm is not None:
        proc, sock, _ = _warm
        _warm = None
        _stop(proc, sock)


def _stop(proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
    sock.close()  # it reads end-of-file and exits; kill in case it is still starting
    proc.kill()
    proc.wait()
