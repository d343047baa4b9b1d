"""Frames from a camera through the worker pool and out to a sink, in order, on time.

A frame source (mjpeg, rtsp) reads frames at the camera's pace and ``offer``s each
one; the pipeline never blocks it. Up to the pool's size frames run at once, and
their results reach the sink in the order the frames arrived, whichever worker
finished first.

Drop policy, when every worker is busy and a frame arrives: at most
``max_pending`` frames (default 1) wait for a worker.

- ``newest`` (default): the waiting frame that is oldest makes room for the new
  one (reason ``superseded``). A worker that frees up always gets the freshest
  frame, so latency stays near one processing time however slow the handler.
- ``oldest``: the new frame is dropped (reason ``busy``); waiting frames keep
  their place. Use it when every processed frame must be consecutive-ish rather
  than fresh.

A result that waits too long for an earlier, still-running frame (a hung handler
without an event timeout) would hold back every later one: once more than
``2 * workers + 2`` results wait behind it, the pipeline gives up on that frame
and moves on; if it finishes later, its result is dropped (reason ``late``).

Results: a 2xx response with a non-empty body becomes a ``SinkItem`` (its body,
content type and the frame's fields). An exception (a 5xx response), another
status or an empty body sends nothing and is counted as sink-skipped (reasons
``error``, ``status``, ``empty``). Without a sink, results are discarded.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, Literal, NamedTuple, Protocol

from core.metrics import TriggerMetrics
from core.sink import Sink, SinkItem
from runtime.events import RawEvent
from runtime.logger import Logger
from runtime.pool import WorkerPool, WorkerUnavailable
from runtime.responses import RawResponse

DropPolicy = Literal["newest", "oldest"]
DROP_POLICIES: tuple[str, ...] = ("newest", "oldest")


class FrameSource(Protocol):
    """What the pipeline needs of the trigger that feeds it (a frame trigger satisfies it
    without the media layer knowing about triggers)."""

    name: str
    pool: WorkerPool
    metrics: TriggerMetrics
    logger: Logger
    sink: Sink | None


class _Waiting(NamedTuple):
    event: RawEvent
    captured_at: float


class FramePipeline:
    """Runs frames through the trigger's pool in parallel (up to the pool's workers), hands
    results to the trigger's sink in frame order, and drops frames by policy instead of
    building latency."""

    def __init__(self, trigger: FrameSource, *, drop_policy: str = "newest",
                 max_pending: int | None = None) -> None:
        if drop_policy not in DROP_POLICIES:
            raise ValueError(f"drop_policy: expected one of {', '.join(DROP_POLICIES)}, "
                             f"got {drop_policy!r}")
        self._trigger = trigger
        self._pool = trigger.pool
        self._keep_newest = drop_policy == "newest"
        self._max_pending = 1 if max_pending is None else max(0, max_pending)
        self._workers = max(1, trigger.pool.size)
        self._reorder_limit = 2 * self._workers + 2
        self.frames = trigger.metrics.frames
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Looked up once: on Python 3.11 get_running_loop() is a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        # Ordered delivery: each dispatched frame takes a sequence number; results wait in
        # ``_done`` until every earlier frame has been delivered (or given up on).
        self._next_seq = 0
        self._next_out = 0
        self._done: dict[int, tuple[SinkItem | None, float]] = {}
        self._closing = False
        # The newest result handed out (what the sink got), for the status page's preview:
        # a reference kept, never a copy or an encode, so it costs nothing per frame.
        self.latest: SinkItem | None = None

    # -- in ---------------------------------------------------------------------------------
    @property
    def full(self) -> bool:
        """Every worker is busy and the waiting room too: the next frame drops one."""
        return self._running >= self._workers and len(self._waiting) >= self._max_pending

    def offer(self, event: RawEvent, captured_at: float) -> bool:
        """Takes a frame without blocking; False when this frame was dropped (counted)."""
        frames = self.frames
        frames.received += 1
        if self._closing:
            frames.dropped("closing")
            return False
        if self._running < self._workers:
            self._dispatch(event, captured_at)
            return True
        waiting = self._waiting
        if len(waiting) < self._max_pending:
            waiting.append(_Waiting(event, captured_at))
            return True
        if self._keep_newest and waiting:
            waiting.popleft()
            waiting.append(_Waiting(event, captured_at))
            frames.dropped("superseded")
            return True
        frames.dropped("busy")
        return False

    async def offer_burst(self, events: list[RawEvent], captured_at: float) -> None:
        """Frames read together (a source that outpaced us). Each is offered after the
        pipeline has had a loop pass whenever it is full, so frames are not dropped for
        arriving at once; meanwhile the sink is corked, so their results leave in one
        write per client rather than one each (a player wakes once, not once a frame)."""
        sink = self._trigger.sink if len(events) > 1 else None
        if sink is not None:
            sink.cork()
        try:
            for event in events:
                if self.full:
                    await asyncio.sleep(0)
                self.offer(event, captured_at)
            if sink is not None:
                await asyncio.sleep(0)  # frames the handler finishes at once reach the sink
        finally:
            if sink is not None:
                sink.uncork()

    def _dispatch(self, event: RawEvent, captured_at: float) -> None:
        self._running += 1
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = loop.create_task(self._run(self._sequence(), event, captured_at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _sequence(self) -> int:
        seq = self._next_seq
        self._next_seq = seq + 1
        return seq

    async def _run(self, seq: int, event: RawEvent, captured_at: float) -> None:
        """Runs a frame, then whichever frame is waiting when it is done, in this same task:
        creating a task per frame costs about as much as a passthrough handler."""
        try:
            while True:
                item: SinkItem | None = None
                try:
                    try:
                        response = await self._pool.submit(event)
                    except WorkerUnavailable:
                        self.frames.dropped("no_worker")
                    else:
                        assert isinstance(response, RawResponse)
                        self.frames.frame_processed(time.monotonic())
                        item = self._to_item(response, event)
                except Exception as exc:  # never lose the pipeline's ordering to one bad frame
                    self.frames.dropped("error")
                    self._trigger.logger.error_with("Frame failed", trigger=self._trigger.name,
                                                    error=repr(exc))
                finally:
                    self._finished(seq, item, captured_at)
                if not self._waiting:
                    return
                waiting = self._waiting.popleft()
                seq, event, captured_at = self._sequence(), waiting.event, waiting.captured_at
        finally:
            self._running -= 1
            if self._waiting and self._running < self._workers:  # this task was cancelled
                waiting = self._waiting.popleft()
                self._dispatch(waiting.event, waiting.captured_at)

    def _to_item(self, response: RawResponse, event: RawEvent) -> SinkItem | None:
        if response.status >= 500:
            self.frames.sink_skipped("error")
        elif not 200 <= response.status < 300:
            self.frames.sink_skipped("status")
        elif not response.body:
            self.frames.sink_skipped("empty")
        else:
            return SinkItem(response.body, response.content_type, event.fields)
        return None

    # -- out, in order ---------------------------------------------------------------------------
    def _finished(self, seq: int, item: SinkItem | None, captured_at: float) -> None:
        if seq < self._next_out:
            if item is not None:
                self.frames.dropped("late")  # given up on while it ran
            return
        done = self._done
        done[seq] = (item, captured_at)
        if seq != self._next_out and len(done) > self._reorder_limit:
            self._next_out = min(done)  # stop waiting for the frames still running before it
        self._deliver_ready()

    def _deliver_ready(self) -> None:
        done, sink, frames = self._done, self._trigger.sink, self.frames
        while self._next_out in done:
            item, captured_at = done.pop(self._next_out)
            self._next_out += 1
            if item is None:
                continue
            if sink is not None:
                sink.write(item)
            self.latest = item
            frames.delivered += 1
            frames.latency.observe(time.monotonic() - captured_at)

    # -- life cycle -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        frames = self.frames
        return {"received": frames.received, "processed": frames.processed,
                "delivered": frames.delivered, "dropped": dict(frames.dropped_by),
                "sink_skipped": dict(frames.skipped_by), "running": self._running,
                "waiting": len(self._waiting)}

    async def close(self) -> None:
        """Takes no more frames, drops the waiting ones and delivers those running, in order."""
        self._closing = True
        if self._waiting:
            self.frames.dropped("closing", len(self._waiting))
            self._waiting.clear()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
