"""One worker's view of the function: its handler, its context, and the call.

Every worker kind (process, thread, async) runs events through a
``FunctionRunner``, so conversion, log capture and error handling are the same
whichever kind the user picks.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nuclio_sdk

from runtime.calls import CallingPlatform
from runtime.codecs import codec_for
from runtime.events import RawEvent, to_nuclio_event
from runtime.handler import LoadedHandler
from runtime.logger import LogCapture, Logger, event_headers
from runtime.responses import (
    OutputError,
    RawResponse,
    convert_batch_output,
    convert_exception,
    convert_output,
    error_response,
)

if TYPE_CHECKING:  # annotations only: a process worker with a sync handler never imports asyncio
    import asyncio

Payload = RawEvent | list[RawEvent]
Result = RawResponse | list[RawResponse]


@dataclass(frozen=True)
class FunctionSettings:
    """What a worker needs to load and run the function; picklable for process workers."""

    handler: str
    function_dir: str
    function_name: str
    namespace: str
    trigger_kind: str
    trigger_name: str
    log_level: int
    log_format: str = "json"
    expose_tracebacks: bool = False
    platform_kind: str = "local"
    # The function's own ``spec.env`` (and NUCLIO_FUNCTION_*): its process workers get it
    # on top of the processor's environment as it was before any function's env.
    env: tuple[tuple[str, str], ...] = ()


def make_context(settings: FunctionSettings, logger: Logger, worker_id: str) -> Any:
    platform = CallingPlatform(settings.platform_kind, namespace=settings.namespace)
    trigger = nuclio_sdk.TriggerInfo(settings.trigger_kind, settings.trigger_name)
    return nuclio_sdk.Context(logger=logger, platform=platform, worker_id=worker_id,
                              trigger=trigger)


class FunctionRunner:
    def __init__(self, loaded: LoadedHandler, settings: FunctionSettings, worker_id: str,
                 logger: Logger | None = None) -> None:
        self.loaded = loaded
        self.settings = settings
        self.logger = logger or Logger(settings.function_name, settings.log_level,
                                       settings.log_format, worker_id)
        self.context = make_context(settings, self.logger, worker_id)
        self._handler = loaded.handler

    # -- init_context -------------------------------------------------------
    def init_sync(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        init = self.loaded.init_context
        if init is None:
            return
        if self.loaded.init_is_async:
            assert loop is not None
            loop.run_until_complete(init(self.context))
        else:
            init(self.context)

    async def init_async(self) -> None:
        init = self.loaded.init_context
        if init is None:
            return
        result = init(self.context)
        if isinstance(result, Awaitable):
            await result

    # -- calls ----------------------------------------------------------------
    def run_sync(self, payload: Payload, loop: asyncio.AbstractEventLoop | None = None) -> Result:
        """Runs a sync handler (or an async one on a private ``loop``) to a response."""
        log_level = None if isinstance(payload, list) else payload.log_level
        capture = LogCapture(log_level) if log_level is not None else None
        token = event_headers.set(None if isinstance(payload, list) else payload.headers)
        try:
            if capture is not None:
                capture.__enter__()
            arg = self._argument(payload)
            output = self._handler(self.context, arg)
            if self.loaded.is_async:
                assert loop is not None
                output = loop.run_until_complete(output)
            return self._finish(payload, output, capture, arg)
        except (Exception, SystemExit) as exc:  # the handler's failure costs one event only
            return self._failed(payload, exc, capture)
        finally:
            event_headers.reset(token)
            if capture is not None:
                capture.__exit__()

    async def run_async(self, payload: Payload) -> Result:
        log_level = None if isinstance(payload, list) else payload.log_level
        capture = LogCapture(log_level) if log_level is not None else None
        token = event_headers.set(None if isinstance(payload, list) else payload.headers)
        try:
            if capture is not None:
                capture.__enter__()
            arg = self._argument(payload)
            output = await self._handler(self.context, arg)
            return self._finish(payload, output, capture, arg)
        except (Exception, SystemExit) as exc:
            return self._failed(payload, exc, capture)
        finally:
            event_headers.reset(token)
            if capture is not None:
                capture.__exit__()

    def terminate(self) -> None:
        """Runs the function's termination callback (``platform.set_termination_callback``)."""
        try:
            self.context.platform._on_signal("termination")
        except Exception as exc:
            self.logger.error_with("Termination callback raised", error=repr(exc))

    # -- helpers --------------------------------------------------------------
    @staticmethod
    def _argument(payload: Payload) -> Any:
        if isinstance(payload, list):
            return [to_nuclio_event(raw) for raw in payload]
        if payload.codec is not None:
            return codec_for(payload.codec[0]).decode(payload)
        return to_nuclio_event(payload)

    def _finish(self, payload: Payload, output: Any, capture: LogCapture | None, event: Any
                ) -> Result:
        if isinstance(payload, list):
            return convert_batch_output(output, [raw.id for raw in payload])
        try:
            if payload.codec is not None:
                response = codec_for(payload.codec[0]).encode(output, event, payload)
            else:
                response = convert_output(output, payload.id)
        except nuclio_sdk.ExceptionWithResponse as exc:
            response = convert_exception(exc, payload.id)  # type: ignore[assignment]
        except OutputError as exc:
            self.logger.error_with("Handler returned an unsupported value", event_id=payload.id,
                                   error=str(exc))
            response = error_response(500, str(exc), payload.id)
        if capture is not None:
            response = response._replace(logs=capture.records)
        return response

    def _failed(self, payload: Payload, exc: BaseException, capture: LogCapture | None) -> Result:
        if isinstance(payload, list):
            return [self._error(raw.id, exc) for raw in payload]
        response = self._error(payload.id, exc)
        if capture is not None:
            response = response._replace(logs=capture.records)
        return response

    def _error(self, event_id: str, exc: BaseException) -> RawResponse:
        explicit = convert_exception(exc, event_id)
        if explicit is not None:
            return explicit
        tb = "".join(traceback.format_exception(exc))
        self.logger.error_with("Exception raised while running the handler",
                               event_id=event_id, error=f"{type(exc).__name__}: {exc}",
                               traceback=tb)
        details = {"event_id": event_id}
        if self.settings.expose_tracebacks:
            details.update(exception=f"{type(exc).__name__}: {exc}", traceback=tb)
        return error_response(500, "the function raised an exception", event_id, details)
