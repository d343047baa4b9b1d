"""Entry point of a process worker: ``python -m runtime.workers.process_main FD``.

A plain blocking loop over a Unix socket inherited from the processor: one
event in, one response out. It imports only the runtime (not aiohttp), so a
worker costs little memory beyond the user's own imports; asyncio only for an
``async def`` handler or ``init_context``, since a worker's start-up is on the
processor's path to ``/ready``. The first message brings the settings and the
environment the worker should have: a warm worker (``runtime.warm_worker``) was
started before its function's ``spec.env`` was known and takes it on here.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from runtime import calls
from runtime.events import RawEvent
from runtime.function import FunctionRunner, FunctionSettings
from runtime.handler import HandlerLoadError, load_handler
from runtime.responses import RawResponse, error_response
from runtime.workers import wire

if TYPE_CHECKING:
    import asyncio


def _die_with_parent() -> None:
    # Linux: get SIGKILL when the processor dies, so no worker is ever orphaned.
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _receive(reader: IO[bytes]) -> Any:
    header = reader.read(wire.HEADER)
    if len(header) < wire.HEADER:
        return None
    size = int.from_bytes(header, "little")
    data = reader.read(size)
    if len(data) < size:
        return None
    return wire.pickle.loads(data)


class Inbox:
    """Messages from the processor, in order. A pipelining pool may send the next event
    while a call_function answer is awaited: such events wait here for the main loop."""

    def __init__(self, reader: IO[bytes]) -> None:
        self._reader = reader
        self._held: collections.deque[Any] = collections.deque()

    def next(self) -> Any:
        """The next message (None once the processor has gone)."""
        return self._held.popleft() if self._held else _receive(self._reader)

    def call_result(self) -> Any:
        """The answer to this worker's call, holding back events that arrive first."""
        while True:
            message = _receive(self._reader)
            if message is None or message[0] == "call_result":
                return message
            self._held.append(message)


class WireCalls:
    """``call_function`` from this worker: one hop over the worker's socket to the
    processor, which runs the call and sends the response back."""

    def __init__(self, inbox: Inbox, send: Callable[[bytes], Any]) -> None:
        self._inbox = inbox
        self._send = send
        self._lock = threading.Lock()  # handler threads calling at once take turns

    def call(self, name: str, event: RawEvent, timeout: float | None) -> RawResponse:
        with self._lock:
            self._send(wire.encode(("call", (name, tuple(event), timeout))))
            message = self._inbox.call_result()
        if message is None:
            return error_response(502, "the processor did not answer the call")
        return RawResponse(*message[1])


def serve(sock: socket.socket) -> int:
    reader: IO[bytes] = sock.makefile("rb", buffering=1 << 16)  # type: ignore[assignment]
    send = sock.sendall
    inbox = Inbox(reader)
    calls.install_worker_calls(WireCalls(inbox, send))
    first = inbox.next()
    if first is None:
        return 1
    _, settings, worker_id, env = first
    if env != dict(os.environ):  # a warm worker: started before its function's env was known
        os.environ.clear()
        os.environ.update(env)
    assert isinstance(settings, FunctionSettings)
    try:
        loaded = load_handler(settings.handler, settings.function_dir)
    except HandlerLoadError as exc:
        send(wire.encode(("load_error", str(exc))))
        return 2
    send(wire.encode(("loaded", None)))
    runner = FunctionRunner(loaded, settings, worker_id)
    loop: asyncio.AbstractEventLoop | None = None
    if loaded.is_async or loaded.init_is_async:
        import asyncio

        loop = asyncio.new_event_loop()
    try:
        runner.init_sync(loop)
    except BaseException as exc:
        runner.logger.error_with("init_context raised", error=repr(exc),
                                 traceback=traceback.format_exc())
        send(wire.encode(("init_error", f"init_context raised {type(exc).__name__}: {exc}")))
        return 3
    send(wire.encode(("ready", None)))
    gc.freeze()  # the handler's module and init_context state live as long as the worker
    run = runner.run_sync
    encode = wire.encode
    receive = inbox.next
    while True:
        message = receive()
        if message is None:
            return 0
        if message[0] == "event":
            result = run(wire.events_from_wire(message[1]), loop)
            send(encode(("result", wire.flatten(result))))
        elif message[0] == "terminate":
            runner.terminate()
            send(encode(("terminated", None)))
            return 0


def main() -> None:
    _die_with_parent()
    # Ctrl-C and SIGTERM reach the whole process group; the processor decides how
    # and when workers stop (after draining), so workers ignore both.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        code = serve(sock)
    except (BrokenPipeError, ConnectionResetError):
        code = 0
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
