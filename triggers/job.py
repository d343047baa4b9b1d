"""The job trigger: run the function once, then end the processor.

This is how a serverless job runs in a Kubernetes Job: the event is sent as
soon as the workers are ready, the response body can be written to a file,
and the exit status says whether it worked (any 2xx by default: the seed
system failed jobs that answered 201).
"""

from __future__ import annotations

import asyncio
import os

from pydantic import Field, field_validator

from runtime.pool import WorkerUnavailable
from runtime.responses import RawResponse
from triggers.base import Trigger, TriggerAttributes
from triggers.fixed_event import FixedEvent

EXIT_FAILED = 1


class JobAttributes(TriggerAttributes):
    event: FixedEvent = Field(default_factory=FixedEvent)
    outputFile: str | None = None
    successStatuses: list[int] | None = None
    # Deployment only: the Kubernetes Job's backoffLimit (``processor kube render``); the
    # processor itself runs the event once either way.
    jobBackoffLimit: int = Field(0, ge=0)

    @field_validator("successStatuses")
    @classmethod
    def _statuses_are_http(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(not 100 <= s <= 599 for s in value)):
            raise ValueError("expected a non-empty list of HTTP status codes (100-599)")
        return value


class JobTrigger(Trigger):
    kind = "job"
    Attributes = JobAttributes
    attributes: JobAttributes

    _task: asyncio.Task[None] | None = None

    def succeeded(self, status: int) -> bool:
        allowed = self.attributes.successStatuses
        return status in allowed if allowed is not None else 200 <= status <= 299

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        raw = self.attributes.event.raw_event(self.kind, self.name)
        self.logger.info_with("Job started", trigger=self.name, event_id=raw.id)
        try:
            result = await self.pool.submit(raw)
        except WorkerUnavailable as exc:
            self._finish(False, f"no worker was available: {exc}")
            return
        assert isinstance(result, RawResponse)
        problem = self._write_output(result)
        if problem:
            self._finish(False, problem)
        elif self.succeeded(result.status):
            self._finish(True, f"the function answered {result.status}")
        else:
            detail = result.body[:200].decode("utf-8", "replace")
            self._finish(False, f"the function answered {result.status}: {detail}")

    def _write_output(self, result: RawResponse) -> str | None:
        """Writes the body where asked; a job whose output is lost has failed."""
        path = self.attributes.outputFile or os.environ.get("JOB_OUTPUT_FILE")
        if not path:
            return None
        try:
            with open(path, "wb") as handle:
                handle.write(result.body)
        except OSError as exc:
            return f"cannot write the output file {path}: {exc.strerror}"
        return None

    def _finish(self, ok: bool, reason: str) -> None:
        if ok:
            self.logger.info_with("Job succeeded", trigger=self.name, reason=reason)
            self.request_stop(0)
        else:
            self.logger.error_with("Job failed", trigger=self.name, reason=reason)
            self.request_stop(EXIT_FAILED)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
