"""Structured logger shared by the processor and by function code.

Function code calls it through ``context.logger`` with Nuclio's API
(``info``, ``info_with``, printf-style args). It is not built on stdlib
``logging``: a call below the level must return after one comparison, and a
request may ask (``X-Nuclio-Log-Level``) for its own log lines to be captured
and returned, which is per event, hence a context variable.
"""

from __future__ import annotations

import contextvars
import json
import os
import time
from collections.abc import Callable
from typing import Any

from runtime.tracing import trace_id, traceparent_of

DEBUG, INFO, WARN, ERROR = 10, 20, 30, 40
LEVELS: dict[str, int] = {
    "debug": DEBUG,
    "info": INFO,
    "warn": WARN,
    "warning": WARN,
    "error": ERROR,
}
LEVEL_NAMES = {DEBUG: "debug", INFO: "info", WARN: "warn", ERROR: "error"}
_NEVER = 100

# (minimum level, list the records go to) for the event being handled, if asked.
_capture: contextvars.ContextVar[tuple[int, list[dict[str, Any]]] | None] = (
    contextvars.ContextVar("nuclio_log_capture", default=None)
)
_active_captures = 0

# Headers of the event being handled in this context (set by the worker around the
# handler, and by the processor around a call between functions): its W3C trace id goes
# into every log line written meanwhile, and ``call_function`` passes the trace on.
event_headers: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "nuclio_event_headers", default=None)


def parse_level(name: str | None, default: int = INFO) -> int:
    if not name:
        return default
    return LEVELS.get(name.strip().lower(), default)


def _stdout_sink(line: str) -> None:
    # One write per line keeps lines from interleaving across worker processes.
    os.write(1, line.encode("utf-8", "replace"))


def _timestamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _json_default(value: Any) -> str:
    return str(value)


def _format_message(message: Any, args: tuple[Any, ...]) -> str:
    text = str(message)
    if not args:
        return text
    try:
        return text % args
    except (TypeError, ValueError):
        return " ".join([text, *map(str, args)])


class Logger:
    """Nuclio-style logger: ``debug/info/warn/error`` and their ``*_with`` forms."""

    def __init__(
        self,
        name: str,
        level: int = INFO,
        fmt: str = "json",
        worker_id: str | None = None,
        sink: Callable[[str], None] = _stdout_sink,
    ) -> None:
        self.name = name
        self.level = level
        self.worker_id = worker_id
        self._sink = sink
        self._json = fmt != "text"
        self._bound: dict[str, Any] = {}

    def bind(self, **kwargs: Any) -> None:
        self._bound.update(kwargs)

    def debug(self, message: Any, *args: Any) -> None:
        if self.level <= DEBUG or _active_captures:
            self._log(DEBUG, message, args, None)

    def info(self, message: Any, *args: Any) -> None:
        if self.level <= INFO or _active_captures:
            self._log(INFO, message, args, None)

    def warn(self, message: Any, *args: Any) -> None:
        if self.level <= WARN or _active_captures:
            self._log(WARN, message, args, None)

    warning = warn

    def error(self, message: Any, *args: Any) -> None:
        if self.level <= ERROR or _active_captures:
            self._log(ERROR, message, args, None)

    def debug_with(self, message: Any, *args: Any, **kwargs: Any) -> None:
        if self.level <= DEBUG or _active_captures:
            self._log(DEBUG, message, args, kwargs)

    def info_with(self, message: Any, *args: Any, **kwargs: Any) -> None:
        if self.level <= INFO or _active_captures:
            self._log(INFO, message, args, kwargs)

    def warn_with(self, message: Any, *args: Any, **kwargs: Any) -> None:
        if self.level <= WARN or _active_captures:
            self._log(WARN, message, args, kwargs)

    warning_with = warn_with

    def error_with(self, message: Any, *args: Any, **kwargs: Any) -> None:
        if self.level <= ERROR or _active_captures:
            self._log(ERROR, message, args, kwargs)

    def _log(self, level: int, message: Any, args: tuple[Any, ...],
             fields: dict[str, Any] | None) -> None:
        if self._bound:
            fields = {**self._bound, **(fields or {})}
        headers = event_headers.get()
        if headers is not None:
            trace = trace_id(traceparent_of(headers))
            if trace is not None:
                fields = {**(fields or {}), "trace_id": trace}
        now = time.time()
        text = _format_message(message, args)
        capture = _capture.get() if _active_captures else None
        if capture is not None and level >= capture[0]:
            record: dict[str, Any] = {"datetime": _timestamp(now), "level": LEVEL_NAMES[level],
                                      "message": text}
            if fields:
                # Captured records cross process boundaries: keep them plain data.
                record["with"] = {k: v if isinstance(v, str | int | float | bool | None) else str(v)
                                  for k, v in fields.items()}
            capture[1].append(record)
        if level >= self.level:
            self._sink(self._render(now, level, text, fields))

    def _render(self, now: float, level: int, text: str, fields: dict[str, Any] | None) -> str:
        if self._json:
            record: dict[str, Any] = {"time": _timestamp(now), "level": LEVEL_NAMES[level],
                                      "name": self.name, "message": text}
            if fields:
                record["with"] = fields
            if self.worker_id is not None:
                record["worker_id"] = self.worker_id
            return json.dumps(record, default=_json_default) + "\n"
        worker = f" [w{self.worker_id}]" if self.worker_id is not None else ""
        extra = f" {json.dumps(fields, default=_json_default)}" if fields else ""
        return (f"{_timestamp(now)} {LEVEL_NAMES[level].upper():5} {self.name}{worker}: "
                f"{text}{extra}\n")


class LogCapture:
    """Collects one event's log lines at or above ``level`` (X-Nuclio-Log-Level)."""

    __slots__ = ("_token", "level", "records")

    def __init__(self, level: int) -> None:
        self.level = level
        self.records: list[dict[str, Any]] = []
        self._token: contextvars.Token[Any] | None = None

    def __enter__(self) -> LogCapture:
        global _active_captures
        _active_captures += 1
        self._token = _capture.set((self.level, self.records))
        return self

    def __exit__(self, *exc: object) -> None:
        global _active_captures
        _active_captures -= 1
        if self._token is not None:
            _capture.reset(self._token)
