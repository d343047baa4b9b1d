"""FramePipeline: order, drop policy, result filtering, give-up on a hung frame, close.

The pool is a fake whose events finish when the test says so; everything else
(metrics, sink items) is the real code.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from core.metrics import Metrics
from core.sink import SinkItem
from media.frame_pipeline import FramePipeline
from runtime.events import RawEvent
from runtime.logger import Logger
from runtime.pool import WorkerUnavailable
from runtime.responses import RawResponse


class FakePool:
    """Each submitted frame waits for the test to ``finish`` it with a response."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pending: dict[int, asyncio.Future[RawResponse]] = {}
        self.submitted: list[int] = []

    async def submit(self, event: RawEvent) -> RawResponse:
        num = event.fields["frame_num"]
        self.submitted.append(num)
        fut: asyncio.Future[RawResponse] = asyncio.get_running_loop().create_future()
        self.pending[num] = fut
        return await fut

    def finish(self, num: int, status: int = 200, body: bytes | None = None) -> None:
        body = f"out{num}".encode() if body is None else body
        self.pending.pop(num).set_result(RawResponse(status, {}, body, "image/jpeg"))

    def fail(self, num: int, exc: BaseException) -> None:
        self.pending.pop(num).set_exception(exc)


class FakeSink:
    kind = "fake"

    def __init__(self) -> None:
        self.items: list[SinkItem] = []

    def write(self, item: SinkItem) -> None:
        self.items.append(item)


class FakeTrigger:
    def __init__(self, workers: int, sink: FakeSink | None) -> None:
        self.name = "cam"
        self.pool = FakePool(workers)
        self.sink = sink
        self.logger = Logger("test", sink=lambda line: None)
        self.metrics = Metrics("fn").for_trigger("mjpeg", "cam")


def frame(num: int) -> RawEvent:
    return RawEvent(str(num), b"jpeg", "image/jpeg", {}, {"frame_num": num}, "GET", "/", "",
                    0.0, "mjpeg", "cam")


def make(workers: int = 1, *, sink: bool = True, **kwargs: Any
         ) -> tuple[FramePipeline, FakeTrigger]:
    trigger = FakeTrigger(workers, FakeSink() if sink else None)
    return FramePipeline(trigger, **kwargs), trigger  # type: ignore[arg-type]


def sent(trigger: FakeTrigger) -> list[int]:
    assert trigger.sink is not None
    return [item.fields["frame_num"] for item in trigger.sink.items]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_results_reach_the_sink_in_frame_order_whatever_finishes_first() -> None:
    async def scenario() -> None:
        pipeline, trigger = make(workers=3)
        for num in (1, 2, 3):
            assert pipeline.offer(frame(num), 0.0)
        await settle()
        assert trigger.pool.submitted == [1, 2, 3]
        trigger.pool.finish(3)
        trigger.pool.finish(2)
        await settle()
        assert sent(trigger) == []  # 1 is still running
        trigger.pool.finish(1)
        await settle()
        assert sent(trigger) == [1, 2, 3]
        item = trigger.sink.items[0]  # type: ignore[union-attr]
        assert (item.body, item.content_type, item.fields) == (b"out1", "image/jpeg",
                                                                {"frame_num": 1})
        assert pipeline.frames.delivered == 3 and pipeline.frames.processed == 3
    run(scenario())


def test_keep_newest_replaces_the_waiting_frame_and_counts_the_drop() -> None:
    async def scenario() -> None:
        pipeline, trigger = make(workers=1)
        for num in range(1, 6):
            assert pipeline.offer(frame(num), 0.0)
        await settle()
        assert trigger.pool.submitted == [1]
        assert pipeline.frames.dropped_by == {"superseded": 3}  # 2, 3, 4 made room
        trigger.pool.finish(1)
        await settle()
        assert trigger.pool.submitted == [1, 5]  # the freshest frame ran next
        trigger.pool.finish(5)
        await settle()
        assert sent(trigger) == [1, 5]
        assert pipeline.status()["waiting"] == 0
    run(scenario())


def test_full_says_when_the_next_frame_would_drop_one_and_one_task_runs_the_waiting_frame(
        ) -> None:
    async def scenario() -> None:
        pipeline, trigger = make(workers=2)
        assert not pipeline.full
        pipeline.offer(frame(1), 0.0)
        pipeline.offer(frame(2), 0.0)
        assert not pipeline.full  # both workers busy, the waiting room still free
        pipeline.offer(frame(3), 0.0)
        assert pipeline.full and pipeline.frames.dropped_by == {}
        await settle()
        tasks = set(pipeline._tasks)
        assert len(tasks) == 2
        trigger.pool.finish(1)
        await settle()
        assert trigger.pool.submitted == [1, 2, 3] and not pipeline.full
        assert set(pipeline._tasks) <= tasks  # frame 3 ran on the task that finished 1
        trigger.pool.finish(3)
        trigger.pool.finish(2)
        await settle()
        assert sent(trigger) == [1, 2, 3] and not pipeline._tasks
    run(scenario())


def test_keep_oldest_drops_the_arriving_frame() -> None:
    async def scenario() -> None:
        pipeline, trigger = make(workers=1, drop_policy="oldest")
        assert pipeline.offer(frame(1), 0.0)
        assert pipeline.offer(frame(2), 0.0)  # waits
        assert not pipeline.offer(frame(3), 0.0)
        assert not pipeline.offer(frame(4), 0.0)
        assert pipeline.frames.dropped_by == {"busy": 2}
        await settle()
        trigger.pool.finish(1)
        await settle()
        assert trigger.pool.submitted == [1, 2]
        trigger.pool.finish(2)
        await settle()
        assert sent(trigger) == [1, 2]
    run(scenario())


def test_max_pending_zero_never_queues() -> None:
    async def scenario() -> None:
        pipeline, trigger = make(workers=2, max_pending=0)
        assert pipeline.offer(frame(1), 0.0) and pipeline.offer(frame(2), 0.0)
        assert not pipeline.offer(frame(3), 0.0)
        assert pipeline.frames.dropped_by == {"busy": 1}
        await settle()
        trigger.pool.finish(1)
        trigger.pool.finish(2)
        await settle()
    run(scenario())


def test_errors_other_statuses_and_empty_bodies_send_nothing_but_keep_order() -> None:
    async def scenario() -> None:
        pipeline, trigger = make(workers=4)
        for num in (1, 2, 3, 4):
            pipeline.offer(frame(num), 0.0)
        await settle()
        trigger.pool.finish(4)
        trigger.pool.finish(3, body=b"")
        trigger.pool.finish(2, status=404)
        trigger.pool.finish(1, status=500)
        await settle()
        assert sent(trigger) == [4]
        assert pipeline.frames.skipped_by == {"error": 1, "status": 1, "empty": 1}
        assert pipeline.frames.processed == 4
    run(scenario())


def test_no_worker_is_a_counted_drop() -> None:
    async def scenario() -> None:
        pipeline, trigger = make(workers=2)
        pipeline.offer(frame(1), 0.0)
        pipeline.offer(frame(2), 0.0)
        await settle()
        trigger.pool.fail(1, WorkerUnavailable("no worker"))
        trigger.pool.finish(2)
        await settle()
        assert sent(trigger) == [2]
        assert pipeline.frames.dropped_by == {"no_worker": 1}
    run(scenario())


def test_without_a_sink_results_are_discarded() -> None:
    async def scenario() -> None:
        pipeline, trigger = make(workers=1, sink=False)
        pipeline.offer(frame(1), 0.0)
        await settle()
        trigger.pool.finish(1)
        await settle()
        assert pipeline.frames.processed == 1 and pipeline.frames.delivered == 1
    run(scenario())


def test_a_hung_frame_is_given_up_on_and_its_late_result_dropped() -> None:
    async def scenario() -> None:
        pipeline, trigger = make(workers=2, max_pending=0)
        limit = 2 * 2 + 2
        pipeline.offer(frame(0), 0.0)  # hangs
        await settle()
        for num in range(1, limit + 2):
            assert pipeline.offer(frame(num), 0.0)
            await settle()
            trigger.pool.finish(num)
            await settle()
        assert sent(trigger) == list(range(1, limit + 2))
        trigger.pool.finish(0)
        await settle()
        assert pipeline.frames.dropped_by == {"late": 1}
        assert sent(trigger) == list(range(1, limit + 2))
    run(scenario())


def test_close_delivers_running_frames_in_order_and_drops_waiting_ones() -> None:
    async def scenario() -> None:
        pipeline, trigger = make(workers=2)
        for num in (1, 2, 3):
            pipeline.offer(frame(num), 0.0)
        await settle()
        closing = asyncio.ensure_future(pipeline.close())
        await settle()
        assert not pipeline.offer(frame(4), 0.0)
        trigger.pool.finish(2)
        trigger.pool.finish(1)
        await closing
        assert sent(trigger) == [1, 2]
        assert pipeline.frames.dropped_by == {"closing": 2}  # 3 waited; 4 came too late
    run(scenario())


def test_latency_and_fps_are_exported() -> None:
    async def scenario() -> None:
        metrics = Metrics("fn")
        trigger = FakeTrigger(1, FakeSink())
        trigger.metrics = metrics.for_trigger("mjpeg", "cam")
        pipeline = FramePipeline(trigger)  # type: ignore[arg-type]
        pipeline.offer(frame(1), time.monotonic())
        await settle()
        trigger.pool.finish(1)
        await settle()
        from prometheus_client import generate_latest
        text = generate_latest(metrics.registry).decode()
        assert 'nuclio_processor_frames_processed_total{function="fn",trigger_kind="mjpeg",' \
               'trigger_name="cam"} 1.0' in text
        assert "nuclio_processor_frame_latency_seconds_count" in text
        assert "nuclio_processor_frames_processing_fps" in text
    run(scenario())


def test_unknown_drop_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="drop_policy"):
        make(drop_policy="random")
