"""The nats and nats-jetstream triggers against a real nats-server (with JetStream).

Handlers record every message they handled (test/functions/stream_record.py) before
returning, so "acknowledged" can be checked against "handled": JetStream's ack floor
must never pass a message without a record.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import nats
import pytest
import requests

from test.brokers import NatsServer
from test.stream_support import (
    add_stream,
    consumer_info,
    handled_ids,
    js_publish,
    metric,
    publish,
    ready,
    ready_when_up,
    records,
    run,
    stream_config,
    wait_for,
)


@pytest.fixture
def nats_server(tmp_path: Path) -> Any:
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def js_trigger(url: str, workers: int = 2, **attributes: Any) -> dict[str, Any]:
    attrs = {"stream": "JOBS", "consumer": "workers", "topic": "jobs.>", "ackWait": "2s",
             "nakDelay": "100ms", "nakMaxDelay": "500ms", **attributes}
    return {"js": {"kind": "nats-jetstream", "numWorkers": workers, "url": url,
                   "attributes": attrs}}


# -- JetStream ---------------------------------------------------------------------------
def test_jetstream_1000_messages_with_crashing_worker(nats_server: NatsServer, tmp_path: Path,
                                                      start_processor: Any) -> None:
    run(add_stream(nats_server.url, "JOBS", ["jobs.>"]))
    processor = start_processor(stream_config(js_trigger(nats_server.url, workers=4), tmp_path))
    crashes = {f"c{i}" for i in range(5)}
    bodies = [f"m{i}".encode() for i in range(995)] + [f"crash:0:{c}".encode() for c in crashes]
    run(js_publish(nats_server.url, [(f"jobs.k{i % 3}", b) for i, b in enumerate(bodies)]))
    expected = {b.decode().rsplit(":", 1)[-1] for b in bodies}
    wait_for(lambda: set(handled_ids(tmp_path)) >= expected, 60, "every message handled",
             lambda: processor.logs)

    def settled() -> bool:
        info = run(consumer_info(nats_server.url, "JOBS", "workers"))
        return info.num_pending == 0 and info.num_ack_pending == 0
    wait_for(settled, 10, "every message acked")
    by_body = {r["body"]: r for r in records(tmp_path)}
    for crash in crashes:  # the first delivery killed its worker; a later one was handled
        assert by_body[f"crash:0:{crash}"]["fields"]["delivery_count"] >= 2
    assert by_body["m7"]["topic"] == "jobs.k1" and by_body["m7"]["path"] == "jobs.k1"
    assert by_body["m7"]["fields"]["stream"] == "JOBS"
    assert processor.metric("nuclio_processor_worker_crashes_total") >= len(crashes)
    assert len(records(tmp_path)) <= len(bodies) + len(crashes)  # no runaway redelivery


def test_jetstream_kill_9_mid_run_then_restart(nats_server: NatsServer, tmp_path: Path,
                                              start_processor: Any) -> None:
    run(add_stream(nats_server.url, "JOBS", ["jobs.>"]))
    workers = 3
    config = stream_config(js_trigger(nats_server.url, workers=workers), tmp_path)
    bodies = [f"slow:0.02:m{i}".encode() for i in range(300)]
    run(js_publish(nats_server.url, [("jobs.x", b) for b in bodies]))
    first = start_processor(config)
    peak = 0
    while len(records(tmp_path)) < 60:
        info = run(consumer_info(nats_server.url, "JOBS", "workers"))
        peak = max(peak, info.num_ack_pending)
        time.sleep(0.05)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    assert 0 < peak <= workers, f"{peak} messages in flight for {workers} workers"
    # Nothing acknowledged without a record: the ack floor and every acked message past it.
    info = run(consumer_info(nats_server.url, "JOBS", "workers"))
    handled_seqs = {r["fields"]["stream_sequence"] for r in records(tmp_path)}
    assert info.ack_floor is not None
    assert set(range(1, info.ack_floor.stream_seq + 1)) <= handled_seqs
    start_processor(config)
    expected = {f"m{i}" for i in range(300)}
    wait_for(lambda: set(handled_ids(tmp_path)) >= expected, 60,
             "every message handled after the restart")
    wait_for(lambda: run(consumer_info(nats_server.url, "JOBS", "workers")).num_ack_pending
             == 0, 10, "every message acked")


def test_jetstream_sigterm_settles_every_message_it_took(nats_server: NatsServer,
                                                         tmp_path: Path,
                                                         start_processor: Any) -> None:
    run(add_stream(nats_server.url, "JOBS", ["jobs.>"]))
    processor = start_processor(stream_config(js_trigger(nats_server.url, workers=3,
                                                         ackWait="30s"), tmp_path))
    run(js_publish(nats_server.url, [("jobs.t", f"slow:0.05:m{i}".encode())
                                     for i in range(200)]))
    wait_for(lambda: len(records(tmp_path)) >= 30, 20, "the first messages")
    assert processor.stop() == 0
    info = run(consumer_info(nats_server.url, "JOBS", "workers"))
    # Everything handled was acked before the processor exited: nothing waits for the
    # 30 s ack wait, and the handled count matches the acked count exactly.
    assert info.num_ack_pending == 0
    assert info.ack_floor is not None
    assert info.ack_floor.stream_seq == len(records(tmp_path)) == 200 - info.num_pending


def test_jetstream_slow_handler_is_not_redelivered_while_running(
        nats_server: NatsServer, tmp_path: Path, start_processor: Any) -> None:
    run(add_stream(nats_server.url, "JOBS", ["jobs.>"]))
    start_processor(stream_config(js_trigger(nats_server.url, workers=2, ackWait="1s"),
                                  tmp_path))
    run(js_publish(nats_server.url, [("jobs.slow", b"slow:3.5:s1")]))
    wait_for(lambda: records(tmp_path), 15, "the slow message handled")
    time.sleep(1.5)  # a redelivery would be handled by the idle second worker by now
    assert handled_ids(tmp_path) == ["s1"]
    assert records(tmp_path)[0]["fields"]["delivery_count"] == 1
    info = run(consumer_info(nats_server.url, "JOBS", "workers"))
    assert info.num_redelivered == 0 and info.num_ack_pending == 0


def test_jetstream_replicas_share_one_consumer(nats_server: NatsServer, tmp_path: Path,
                                               start_processor: Any) -> None:
    run(add_stream(nats_server.url, "JOBS", ["jobs.>"]))
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    start_processor(stream_config(js_trigger(nats_server.url), a_dir))
    start_processor(stream_config(js_trigger(nats_server.url), b_dir))
    run(js_publish(nats_server.url, [("jobs.y", f"slow:0.005:m{i}".encode())
                                     for i in range(400)]))
    expected = {f"m{i}" for i in range(400)}
    wait_for(lambda: set(handled_ids(a_dir)) | set(handled_ids(b_dir)) >= expected, 60,
             "every message handled by one replica or the other")
    a, b = handled_ids(a_dir), handled_ids(b_dir)
    assert a and b, f"one replica got nothing: {len(a)} / {len(b)}"
    assert len(a) + len(b) == 400, "a message was handled twice"


def test_jetstream_max_deliver_and_oversize(nats_server: NatsServer, tmp_path: Path,
                                            start_processor: Any) -> None:
    run(add_stream(nats_server.url, "JOBS", ["jobs.>"]))
    processor = start_processor(stream_config(
        js_trigger(nats_server.url, maxDeliver=3, maxMessageSize=100), tmp_path))
    run(js_publish(nats_server.url, [("jobs.z", b"fail:99:f1"), ("jobs.z", b"x" * 500),
                                     ("jobs.z", b"fail:1:f2")]))
    wait_for(lambda: "f2" in handled_ids(tmp_path), 15, "f2 handled on its second delivery")
    wait_for(lambda: metric(processor, "nuclio_processor_rejected_events_total",
                            reason="max_deliver") == 1, 10, "f1 given up")
    assert processor.metric("nuclio_processor_rejected_events_total",
                            reason="body_too_large") == 1
    assert (tmp_path / "marks" / "fail-f1").read_text() == "xxx"  # exactly 3 deliveries
    assert handled_ids(tmp_path) == ["f2"]
    time.sleep(2.5)  # past ackWait: nothing comes back
    info = run(consumer_info(nats_server.url, "JOBS", "workers"))
    assert info.num_ack_pending == 0 and info.num_pending == 0
    assert (tmp_path / "marks" / "fail-f1").read_text() == "xxx"


def test_jetstream_broker_killed_and_restarted_mid_stream(
        nats_server: NatsServer, tmp_path: Path, start_processor: Any) -> None:
    run(add_stream(nats_server.url, "JOBS", ["jobs.>"]))
    processor = start_processor(stream_config(
        js_trigger(nats_server.url, workers=3, reconnectWait="200ms"), tmp_path))
    run(js_publish(nats_server.url, [("jobs.r", f"slow:0.01:m{i}".encode())
                                     for i in range(400)]))
    wait_for(lambda: len(records(tmp_path)) >= 80, 20, "the first messages")
    nats_server.kill()  # SIGKILL: JetStream state stays in its directory
    wait_for(lambda: ready(processor)[0] == 503, 10, "not ready while the broker is gone")
    time.sleep(0.5)
    nats_server.start()
    expected = {f"m{i}" for i in range(400)}
    wait_for(lambda: set(handled_ids(tmp_path)) >= expected, 60,
             "every message handled across the broker restart", lambda: processor.logs)
    wait_for(lambda: run(consumer_info(nats_server.url, "JOBS", "workers")).num_ack_pending
             == 0, 15, "every message acked")
    assert ready(processor)[0] == 200
    assert ready(processor)[1]["triggers"]["js"]["broker"]["connects"] >= 2


def test_broker_down_at_start_then_up(tmp_path: Path, start_processor: Any) -> None:
    server = NatsServer(tmp_path / "nats")
    url = f"nats://user:s3cret@127.0.0.1:{server.port}"
    config = stream_config(js_trigger(url, reconnectWait="200ms"), tmp_path)
    processor = start_processor(config, ready=False)
    status, body = wait_for(lambda: ready_when_up(processor), 15,
                            "the ready probe", lambda: processor.logs)
    assert status == 503 and body["ready"] is False
    broker = body["triggers"]["js"]["broker"]
    assert broker["state"] == "connecting" and broker.get("error"), broker
    assert requests.get(processor.url(processor.health_port, "/live"), timeout=2).ok
    server.user, server.password = "user", "s3cret"
    server.start()
    try:
        run(add_stream(server.url.replace("nats://", "nats://user:s3cret@"), "JOBS",
                       ["jobs.>"]))
        processor.wait_ready()
        run(js_publish(server.url.replace("nats://", "nats://user:s3cret@"),
                       [("jobs.late", b"late1")]))
        wait_for(lambda: handled_ids(tmp_path) == ["late1"], 15, "the message handled")
        assert "s3cret" not in processor.logs
        assert "s3cret" not in str(ready(processor)[1])
    finally:
        server.stop()


# -- NATS core ---------------------------------------------------------------------------
def core_trigger(url: str, workers: int = 2, **attributes: Any) -> dict[str, Any]:
    return {"nc": {"kind": "nats", "numWorkers": workers, "url": url,
                   "attributes": {"topic": "events.*", **attributes}}}


def test_nats_core_1000_messages_once_each(nats_server: NatsServer, tmp_path: Path,
                                           start_processor: Any) -> None:
    processor = start_processor(stream_config(core_trigger(nats_server.url, workers=4),
                                              tmp_path))
    wait_for(lambda: ready(processor)[0] == 200, 10, "connected")
    run(publish(nats_server.url, [(f"events.e{i % 4}", f"m{i}".encode())
                                  for i in range(1000)] + [("other.x", b"not-for-us")]))
    wait_for(lambda: len(handled_ids(tmp_path)) >= 1000, 30, "1000 messages",
             lambda: processor.logs)
    time.sleep(0.3)
    ids = handled_ids(tmp_path)
    assert sorted(ids) == sorted(f"m{i}" for i in range(1000))
    first = next(r for r in records(tmp_path) if r["body"] == "m5")
    assert first["topic"] == "events.e1" and first["trigger"] == "nats"


def test_nats_core_queue_group_splits_between_replicas(nats_server: NatsServer,
                                                       tmp_path: Path,
                                                       start_processor: Any) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    trigger = core_trigger(nats_server.url, queueName="{{.Name}}-workers")
    replicas = [start_processor(stream_config(trigger, d)) for d in (a_dir, b_dir)]
    for replica in replicas:
        wait_for(lambda r=replica: ready(r)[0] == 200, 10, "connected")
    assert ready(replicas[0])[1]["triggers"]["nc"]["queue"] == "test-fn-workers"
    run(publish(nats_server.url, [("events.q", f"m{i}".encode()) for i in range(600)]))
    wait_for(lambda: len(handled_ids(a_dir)) + len(handled_ids(b_dir)) >= 600, 30,
             "600 messages")
    time.sleep(0.3)
    a, b = handled_ids(a_dir), handled_ids(b_dir)
    assert a and b, f"one replica got nothing: {len(a)} / {len(b)}"
    assert sorted(a + b) == sorted(f"m{i}" for i in range(600)), "lost or duplicated"


def test_nats_core_request_reply(nats_server: NatsServer, tmp_path: Path,
                                 start_processor: Any) -> None:
    processor = start_processor(stream_config(core_trigger(nats_server.url,
                                                            maxMessageSize=64), tmp_path))
    wait_for(lambda: ready(processor)[0] == 200, 10, "connected")

    async def ask() -> list[Any]:
        nc = await nats.connect(nats_server.url)
        try:
            answers = await asyncio.gather(*(nc.request("events.rpc", f"q{i}".encode(),
                                                        timeout=5) for i in range(20)))
            failing = await nc.request("events.rpc", b"fail:1:r1", timeout=5)
            too_large = await nc.request("events.rpc", b"x" * 100, timeout=5)
            return [*answers, failing, too_large]
        finally:
            await nc.close()
    answers = run(ask())
    assert [a.data for a in answers[:20]] == [f"handled:q{i}".encode() for i in range(20)]
    assert answers[0].headers and answers[0].headers["Content-Type"] == "text/plain"
    failed = answers[20]
    assert failed.headers["Nats-Service-Error-Code"] == "500"
    assert failed.data == b"failing on purpose"
    assert answers[21].headers["Nats-Service-Error-Code"] == "413"
    assert processor.metric("nuclio_processor_rejected_events_total",
                            reason="body_too_large") == 1
    reply = next(r for r in records(tmp_path) if r["body"] == "q3")["fields"]["reply"]
    assert reply.startswith("_INBOX.")
