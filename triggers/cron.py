"""The cron trigger: Nuclio's ``interval`` or ``schedule``, firing a fixed event.

Schedules are parsed by croniter (a well-kept library) after translating
Nuclio's dialect (robfig/cron): an optional *leading* seconds field, and
``@every <duration>``. A tick that finds no free worker waits up to the
availability timeout and is then skipped and counted; at most ``numWorkers``
ticks run and one more waits, so ticks never pile up behind a slow handler.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any, Literal

from croniter import croniter
from pydantic import Field, field_validator, model_validator

from core.config import parse_go_duration
from runtime.pool import WorkerUnavailable
from triggers.base import Trigger, TriggerAttributes
from triggers.fixed_event import FixedEvent

_EVERY = "@every "


def to_croniter(schedule: str) -> str:
    """Nuclio's seconds-first six fields -> croniter's seconds-last."""
    fields = schedule.split()
    if len(fields) == 6:
        fields = [*fields[1:], fields[0]]
    return " ".join(fields)


class CronAttributes(TriggerAttributes):
    interval: str | None = None
    schedule: str | None = None
    event: FixedEvent = Field(default_factory=FixedEvent)
    # Nuclio's CronJob settings for the platform's ``cronTriggerCreationMode: kube`` (read by
    # ``processor kube render``; no effect when the processor runs the schedule itself).
    concurrencyPolicy: Literal["Allow", "Forbid", "Replace"] = "Forbid"
    jobBackoffLimit: int = Field(2, ge=0)

    @field_validator("interval")
    @classmethod
    def _interval_is_duration(cls, value: str | None) -> str | None:
        if value is not None and parse_go_duration(value) <= 0:
            raise ValueError("expected a positive Go duration such as '10s'")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule_parses(cls, value: str | None) -> str | None:
        if value is None:
            return value
        text = value.strip()
        if text.startswith(_EVERY):
            if parse_go_duration(text[len(_EVERY):].strip()) <= 0:
                raise ValueError("expected '@every <positive duration>'")
        elif not croniter.is_valid(to_croniter(text)):
            raise ValueError(f"expected a cron expression (5 fields, or 6 with seconds first) "
                             f"or a descriptor such as '@hourly' or '@every 5s', got {value!r}")
        return text

    @model_validator(mode="after")
    def _one_of(self) -> CronAttributes:
        if (self.interval is None) == (self.schedule is None):
            raise ValueError("expected exactly one of 'interval' or 'schedule'")
        return self

    def period(self) -> float | None:
        """Seconds between ticks for fixed-rate schedules; None for calendar ones."""
        if self.interval is not None:
            return parse_go_duration(self.interval)
        assert self.schedule is not None
        if self.schedule.startswith(_EVERY):
            return parse_go_duration(self.schedule[len(_EVERY):].strip())
        return None


class CronTrigger(Trigger):
    kind = "cron"
    Attributes = CronAttributes
    attributes: CronAttributes

    _ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._outstanding: set[asyncio.Task[None]] = set()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        self.logger.info_with("Cron trigger started", trigger=self.name,
                              interval=self.attributes.interval,
                              schedule=self.attributes.schedule)

    def _next_times(self) -> Any:
        """Yields wall-clock times (epoch seconds) of the coming ticks."""
        period = self.attributes.period()
        if period is not None:
            next_at = time.time() + period
            while True:
                yield next_at
                next_at += period
        assert self.attributes.schedule is not None
        schedule = croniter(to_croniter(self.attributes.schedule),
                            datetime.datetime.now().astimezone())
        while True:
            yield schedule.get_next(float)

    async def _tick_forever(self) -> None:
        for due in self._next_times():
            now = time.time()
            if due < now - 1.0:
                continue  # the machine slept or the loop stalled: skip missed ticks
            await asyncio.sleep(max(0.0, due - now))
            self._tick()

    def _tick(self) -> None:
        if len(self._outstanding) > self.pool.size:
            self.metrics.rejected("tick_overlap")  # a tick is already waiting for a worker
            return
        task = asyncio.get_running_loop().create_task(self._fire())
        self._outstanding.add(task)
        task.add_done_callback(self._outstanding.discard)

    async def _fire(self) -> None:
        raw = self.attributes.event.raw_event(self.kind, self.name)
        try:
            await self.pool.submit(raw)
        except WorkerUnavailable:
            self.metrics.rejected("no_worker")
            self.logger.warn_with("Cron tick skipped: no free worker", trigger=self.name)

    async def stop_accepting(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
