"""Process workers: one OS process per worker, Nuclio's isolation model.

The processor talks to each worker over a Unix socket pair through an asyncio
protocol (no thread, no extra task per event). A worker that overruns the
event timeout is killed; one that dies (``os._exit``, SIGKILL, segfault) fails
only its in-flight event; the pool starts a replacement either way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import subprocess
from collections.abc import Callable
from typing import Any

from runtime import calls
from runtime import warm_worker as warm
from runtime.events import RawEvent
from runtime.function import FunctionSettings, Payload, Result
from runtime.pool import WorkerLost, WorkerStartError
from runtime.responses import error_response
from runtime.waiting_line import LineEntry, WaitingLine
from runtime.workers import wire

# The environment before any function's ``spec.env`` was applied (set by the CLI when it
# hosts several functions), so each function's workers get only their own env on top.
_base_env: dict[str, str] | None = None


def set_base_env(env: dict[str, str]) -> None:
    global _base_env
    _base_env = dict(env)


def base_env() -> dict[str, str] | os._Environ[str]:
    """What a worker's environment starts from: the processor's, or as it was before any
    function's env when several functions are hosted."""
    return os.environ if _base_env is None else _base_env


def _child_env(settings: FunctionSettings) -> dict[str, str]:
    return warm.worker_env(base_env(), settings.env)


class _Channel(asyncio.Protocol):
    def __init__(self, worker: ProcessWorker) -> None:
        self._worker = worker
        self._decoder = wire.Decoder()

    def data_received(self, data: bytes) -> None:
        for message in self._decoder.feed(data):
            self._worker._on_message(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._worker._on_lost()


class ProcessWorker:
    def __init__(self, worker_id: str, settings: FunctionSettings,
                 on_exit: Callable[[ProcessWorker, str], None] = lambda w, why: None,
                 line: WaitingLine | None = None) -> None:
        self.worker_id = worker_id
        # Nuclio's allocation without pipelining: when this worker answers, the oldest
        # event waiting in the pool's line is sent to it from the same callback.
        self._line = line
        self._settings = settings
        self._on_exit = on_exit
        self._proc: subprocess.Popen[bytes] | None = None
        self._transport: asyncio.Transport | None = None
        self._pending: asyncio.Future[Any] | None = None  # a start-up or terminate answer
        # Events sent, oldest first (more than one when the pool pipelines); the worker
        # answers in order. Only the oldest runs, so only it has a timeout armed.
        self._runs: collections.deque[tuple[asyncio.Future[Any], float | None]] = \
            collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._stopping = False
        self._early: collections.deque[tuple[str, Any]] = collections.deque()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set in load()
        self._calls: set[asyncio.Task[None]] = set()  # call_function requests being answered

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def spawn(self) -> None:
        """Starts the OS process, or takes the warm one (``runtime.warm_worker``), and
        hands it its settings and environment; needs no event loop, so the CLI can call
        it before the processor's heavier imports (see ``prespawn``)."""
        env = _child_env(self._settings)
        self._proc, parent = warm.take(env) or warm.spawn_worker(env)
        parent.sendall(wire.encode(("start", self._settings, self.worker_id, env)))
        self._sock = parent

    async def load(self) -> None:
        if self._sock is None:
            self.spawn()
        assert self._sock is not None
        loop = self._loop = asyncio.get_running_loop()
        transport, _ = await loop.create_unix_connection(lambda: _Channel(self),
                                                         sock=self._sock)
        self._transport = transport
        await self._expect("loaded")

    async def init(self) -> None:
        await self._expect("ready")

    async def _expect(self, expected: str) -> None:
        if self._early:
            kind, value = self._early.popleft()
        else:
            kind, value = await self._wait_start_message()
        if kind != expected:
            self.kill()
            raise WorkerStartError(str(value), load_error=kind == "load_error")

    async def _wait_start_message(self) -> tuple[str, Any]:
        fut = asyncio.get_running_loop().create_future()
        self._pending = fut
        try:
            return await fut
        except WorkerLost as lost:
            raise WorkerStartError(f"worker {self.worker_id} exited during start-up "
                                   f"({self._exit_description()})") from lost

    def _send(self, message: Any) -> None:
        assert self._transport is not None
        self._transport.write(wire.encode(message))

    async def run(self, payload: Payload, timeout: float | None) -> Result:
        if self._closed:
            raise WorkerLost(500, "the worker process is gone")
        fut: asyncio.Future[Result] = self._loop.create_future()
        self._enqueue(payload, fut, timeout)
        return await fut

    def start_entry(self, entry: LineEntry) -> None:
        """The pool hands this idle worker the oldest waiting event."""
        if self._closed:
            entry.future.set_exception(WorkerLost(
                503, "the worker process is gone before this event started", started=False))
            return
        self._enqueue(entry.payload, entry.future, entry.timeout)

    def _enqueue(self, payload: Payload, fut: asyncio.Future[Any], timeout: float | None
                 ) -> None:
        runs = self._runs
        runs.append((fut, timeout))
        self._send(("event", wire.flatten(payload)))
        if len(runs) == 1:
            self._rearm()

    def _on_timeout(self, fut: asyncio.Future[Any], timeout: float) -> None:
        if self._runs and self._runs[0][0] is fut and not fut.done():
            self._fail_runs(WorkerLost(408, f"event timed out after {timeout:g}s"))
            self.kill()

    def _rearm(self) -> None:
        """The oldest event is the one running in the worker: its timeout, and only its,
        is armed (from when it started, not from when it was queued)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._runs:
            fut, timeout = self._runs[0]
            if timeout:
                self._timer = self._loop.call_later(timeout, self._on_timeout, fut, timeout)

    def _fail_runs(self, lost: WorkerLost) -> None:
        """The oldest event gets ``lost``; the ones queued behind it never started."""
        first = True
        while self._runs:
            fut, _ = self._runs.popleft()
            if not fut.done():
                fut.set_exception(lost if first else WorkerLost(
                    503, "the worker was lost before this event started", started=False))
            first = False
        self._rearm()

    def _on_result(self, message: tuple[str, Any]) -> None:
        if not self._runs:
            return
        fut, _ = self._runs.popleft()
        if not fut.done():
            fut.set_result(wire.results_from_wire(message[1]))
        line = self._line
        if line is not None and not self._runs and not self._stopping:
            entry = line.take(self)  # this worker is free: the oldest waiting event, now
            if entry is not None:
                line.taken(self, entry)
                self._enqueue(entry.payload, entry.future, entry.timeout)
                return
        self._rearm()  # the next event starts now in the worker

    def _on_message(self, message: tuple[str, Any]) -> None:
        kind = message[0]
        if kind == "result":
            self._on_result(message)
            return
        if kind == "call":  # the handler's call_function, while its event runs
            task = self._loop.create_task(self._answer_call(*message[1]))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
            return
        fut = self._pending
        if fut is not None and not fut.done():
            self._pending = None
            fut.set_result(message)
        else:
            self._early.append(message)  # start-up messages can arrive together

    async def _answer_call(self, name: str, event: Any, timeout: float | None) -> None:
        dispatch = calls.installed_dispatch()
        try:
            if dispatch is None:
                response = error_response(501, "call_function is not available here")
            else:
                response = await dispatch(name, RawEvent(*event), timeout)
        except Exception as exc:  # the worker waits for an answer: it must get one
            response = error_response(500, f"call to {name!r} failed: {type(exc).__name__}")
        if not self._closed and self._transport is not None:
            self._send(("call_result", tuple(response)))

    def _on_lost(self) -> None:
        if self._closed:
            return
        self._closed = True
        fut = self._pending
        reason = f"the worker process exited ({self._exit_description()})"
        if self._runs:
            self._fail_runs(WorkerLost(500, reason))
        elif fut is not None and not fut.done():
            fut.set_exception(WorkerLost(500, reason))
        elif not self._stopping:
            self._on_exit(self, reason)
        self._reap()

    def _exit_description(self) -> str:
        if self._proc is None:
            return "not started"
        code = self._proc.poll()
        if code is None:
            return "connection closed"
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def _reap(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            asyncio.get_running_loop().run_in_executor(None, proc.wait)

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._transport is not None:
            self._transport.close()
        elif self._sock is not None:
            self._sock.close()

    async def stop(self, timeout: float) -> None:
        """Asks the worker to run its termination callback and exit."""
        if self._closed or self._transport is None:
            self.kill()
            return
        self._stopping = True
        self._fail_runs(WorkerLost(503, "the processor is shutting down"))
        fut = asyncio.get_running_loop().create_future()
        self._pending = fut
        self._send(("terminate", None))
        with contextlib.suppress(TimeoutError, WorkerLost):
            await asyncio.wait_for(fut, timeout)
        self.kill()
        if self._proc is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._proc.wait)


# Workers started by the CLI before the event loop exists, by function, trigger, worker id.
_prespawned: dict[tuple[str, str, str], ProcessWorker] = {}


def prespawn(settings: FunctionSettings, count: int) -> None:
    """Starts a trigger's worker processes early, so that their interpreter start-up and
    handler import overlap with the processor's own imports (cold start)."""
    for i in range(count):
        worker = ProcessWorker(str(i), settings)
        worker.spawn()
        _prespawned[(settings.function_name, settings.trigger_name, worker.worker_id)] = worker


def claim_worker(worker_id: str, settings: FunctionSettings,
                 on_exit: Callable[[ProcessWorker, str], None], line: WaitingLine | None = None
                 ) -> ProcessWorker:
    """A prespawned worker for this slot if one matches, else a new one."""
    worker = _prespawned.pop((settings.function_name, settings.trigger_name, worker_id), None)
    if worker is not None and worker._settings == settings:
        worker._on_exit = on_exit
        worker._line = line
        return worker
    if worker is not None:
        worker.kill()
    return ProcessWorker(worker_id, settings, on_exit, line)


def discard_unclaimed() -> None:
    """Stops prespawned workers no pool took (e.g. the config resolved differently)."""
    for worker in _prespawned.values():
        worker.kill()
    _prespawned.clear()
    warm.discard()
