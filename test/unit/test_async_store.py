"""The SQLite call store (group commit, idempotency, bounds, recovery), the retry
schedule and the callback signature, without a processor."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import time
from pathlib import Path

import pytest

from invocations.config import Retention, RetryPolicy
from invocations.retry import backoff_delay, retry_after_seconds
from invocations.signing import signature, verify
from invocations.sqlite_store import SqliteStore
from invocations.store import Call, Outcome
from runtime.logger import Logger

LOG = Logger("test", 40, "json")


def _call(call_id: str, body: bytes = b"x", function: str = "f") -> Call:
    call = Call(id=call_id, function=function, method="POST", path="/", query={}, headers={},
                body=body, content_type="", callback_url=None, accepted_ns=time.time_ns(),
                max_attempts=3, due_at=time.time())
    call.digest = call.compute_digest()
    return call


def _store(tmp_path: Path, **retention: int) -> SqliteStore:
    store = SqliteStore(str(tmp_path / "store"), Retention(**retention), LOG)
    store.open()
    return store


def test_concurrent_accepts_share_commits(tmp_path: Path) -> None:
    async def main() -> tuple[int, int]:
        store = _store(tmp_path)
        await store.start()
        results = await asyncio.gather(*(store.accept(_call(f"c{i}"), 10_000)
                                         for i in range(500)))
        assert all(verdict == "new" for verdict, _ in results)
        assert store._writer is not None
        batches, ops = store._writer.batches, store._writer.ops
        assert await store.depth("f") == 500
        await store.close()
        return batches, ops

    batches, ops = asyncio.run(main())
    assert ops == 500
    assert batches <= ops / 5, f"{batches} commits for {ops} accepts: no group commit"


def test_idempotency_and_the_queue_bound(tmp_path: Path) -> None:
    async def main() -> None:
        store = _store(tmp_path)
        await store.start()
        assert (await store.accept(_call("a"), 2))[0] == "new"
        assert (await store.accept(_call("a"), 2))[0] == "duplicate"
        assert (await store.accept(_call("a", b"other"), 2))[0] == "conflict"
        assert (await store.accept(_call("b"), 2))[0] == "new"
        assert (await store.accept(_call("c"), 2))[0] == "full"
        assert (await store.accept(_call("c", function="g"), 2))[0] == "new"  # its own queue
        await store.close()

    asyncio.run(main())


def test_attempts_survive_a_crash_and_running_calls_run_again(tmp_path: Path) -> None:
    async def crash() -> None:
        store = _store(tmp_path)
        await store.start()
        await store.accept(_call("a"), 10)
        claimed, _ = await store.claim("f", 5)
        assert [c.id for c in claimed] == ["a"] and claimed[0].attempts == 1
        assert (await store.claim("f", 5))[0] == []  # running: not handed out twice
        assert store._writer is not None
        await store._writer.close()  # the process "dies": no record of the outcome
        assert store._lock_fd is not None
        import os
        os.close(store._lock_fd)

    async def restart() -> None:
        store = _store(tmp_path)
        await store.start()
        assert store.recovered == 1
        call = await store.get("a")
        assert call is not None and call.state == "queued" and call.attempts == 1
        claimed, _ = await store.claim("f", 5)
        assert claimed[0].attempts == 2
        await store.record(claimed[0], Outcome(200, {}, b"ok", "text/plain", 0.1),
                           "succeeded", 0.0)
        done = await store.get("a")
        assert done is not None and done.state == "succeeded" and done.resp_body == b"ok"
        assert await store.depth("f") == 0
        await store.close()

    asyncio.run(crash())
    asyncio.run(restart())


def test_one_processor_per_directory(tmp_path: Path) -> None:
    first = _store(tmp_path)
    with pytest.raises(OSError, match="in use by another processor"):
        _store(tmp_path)
    asyncio.run(first.close())


def test_retry_is_scheduled_and_large_results_are_dropped(tmp_path: Path) -> None:
    async def main() -> None:
        store = _store(tmp_path, maxResultBytes=4)
        await store.start()
        await store.accept(_call("a"), 10)
        (call,), _ = await store.claim("f", 1)
        await store.record(call, Outcome(503, {}, b"", "", 0.0), "retrying", 30.0)
        assert (await store.claim("f", 1))[0] == []
        _, next_due = await store.claim("f", 1)
        assert next_due is not None and 29 < next_due <= 30
        await store.record(call, Outcome(200, {}, b"too large", "", 0.0), "succeeded", 0.0)
        done = await store.get("a")
        assert done is not None and done.resp_dropped and done.resp_body is None
        assert done.public()["response"]["body_dropped"] is True
        await store.close()

    asyncio.run(main())


def test_backoff_doubles_to_the_cap_and_honours_retry_after() -> None:
    policy = RetryPolicy(initialDelay=10, maxDelay=120, jitter=0)
    assert [backoff_delay(policy, n) for n in range(1, 6)] == [10, 20, 40, 80, 120]
    assert backoff_delay(policy, 1, retry_after=90) == 90
    assert backoff_delay(policy, 3, retry_after=1) == 40
    jittery = RetryPolicy(initialDelay=10, maxDelay=120, jitter=0.1)
    assert all(9 <= backoff_delay(jittery, 1) <= 11 for _ in range(100))
    assert retry_after_seconds("7") == 7
    soon = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 < (retry_after_seconds(soon) or 0) <= 60
    assert retry_after_seconds("soon") is None


def test_signature_covers_call_id_and_body() -> None:
    expected = hmac.new(b"k", b"id-1\nbody", hashlib.sha256).hexdigest()
    assert signature(b"k", "id-1", b"body") == f"sha256={expected}"
    assert verify(b"k", "id-1", b"body", f"sha256={expected}")
    assert not verify(b"k", "id-2", b"body", f"sha256={expected}")
