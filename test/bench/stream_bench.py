#!/usr/bin/env python3
"""Stream-trigger benchmark: messages/s through the nats, nats-jetstream and mqtt
triggers against bare nats-py / aiomqtt consumers, measured in the same run.

Run as ``python test/bench/stream_bench.py [--rounds 3]``. Brokers (nats-server -js,
mosquitto) run on free loopback ports. Each case has two consumers, each in a
process of its own, fed the same load by this script:

- **ours**: the processor (async worker kind, a trivial ``async def`` handler that
  returns the body, ``numWorkers`` 64) behind the trigger; done when the
  processor's handled-events counter reaches N;
- **bare**: a minimal client doing the least the same guarantee needs (core
  NATS: a subscription counting messages; JetStream: a durable pull consumer
  fetching batches of 64 and acking each message; MQTT: an aiomqtt subscription
  counting messages), on uvloop; done when it has seen N.

Time runs from the first publish to "done". Rounds are interleaved (the order
alternates), medians reported, ratios ours/bare. MQTT is published with QoS 1 from
this process, so that case is also bounded by the publisher; mosquitto runs with
``max_queued_messages 0`` (its default of 1000 would drop QoS 1 messages queued
for a consumer slower than the publisher).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
import aiomqtt
import nats
from nats.js.api import StreamConfig

from test.brokers import Mosquitto, NatsServer
from test.conftest import ROOT, RunningProcessor, function_config

TARGETS = {"nats": 0.5, "nats-jetstream": 0.5, "mqtt": 0.5}
WORKERS = 64

BARE = {
    "nats": """
import asyncio, sys, time, nats, uvloop
async def main(url, n):
    nc = await nats.connect(url)
    done = asyncio.Event(); count = 0
    async def cb(msg):
        nonlocal count
        count += 1
        if count == n: done.set()
    await nc.subscribe("bench.core", cb=cb, pending_msgs_limit=1 << 20)
    await nc.flush(); print("ready", flush=True)
    await done.wait(); print(time.time(), flush=True)
uvloop.run(main(sys.argv[1], int(sys.argv[2])))
""",
    "nats-jetstream": """
import asyncio, sys, time, nats, uvloop
from nats.js.api import ConsumerConfig, DeliverPolicy
async def main(url, n, durable):
    nc = await nats.connect(url); js = nc.jetstream()
    sub = await js.pull_subscribe("bench.js", durable=durable, stream="BENCH",
                                  config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW))
    print("ready", flush=True); count = 0
    while count < n:
        try:
            msgs = await sub.fetch(64, timeout=1)
        except Exception:
            continue
        for msg in msgs:
            await msg.ack(); count += 1
    await nc.flush(); print(time.time(), flush=True)
uvloop.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
""",
    "mqtt": """
import asyncio, sys, time, aiomqtt, uvloop
async def main(port, n):
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("bench/mqtt", qos=1); print("ready", flush=True)
        count = 0
        async for _ in client.messages:
            count += 1
            if count == n: break
        print(time.time(), flush=True)
uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
""",
}


async def publish_core(url: str, n: int) -> None:
    nc = await nats.connect(url)
    for i in range(n):
        await nc.publish("bench.core", b"m%d" % i)
    await nc.flush()
    await nc.close()


async def publish_js(url: str, n: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    futures = [await js.publish_async("bench.js", b"m%d" % i, wait_stall=5)
               for i in range(n)]
    await asyncio.gather(*futures)
    await nc.close()


async def publish_mqtt(port: int, n: int) -> None:
    quiet = logging.getLogger("bench.mqtt")  # aiomqtt warns about every queued publish
    quiet.setLevel(logging.ERROR)
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=1000,
                              logger=quiet) as client:
        await asyncio.gather(*(client.publish("bench/mqtt", b"m%d" % i, qos=1)
                               for i in range(n)))


def publish(case: str, brokers: dict[str, Any], n: int) -> None:
    if case == "nats":
        asyncio.run(publish_core(brokers["nats"].url, n))
    elif case == "nats-jetstream":
        asyncio.run(publish_js(brokers["nats"].url, n))
    else:
        asyncio.run(publish_mqtt(brokers["mqtt"].port, n))


def trigger_for(case: str, brokers: dict[str, Any], durable: str) -> dict[str, Any]:
    if case == "nats":
        attrs: dict[str, Any] = {"topic": "bench.core"}
        url = brokers["nats"].url
    elif case == "nats-jetstream":
        attrs = {"stream": "BENCH", "consumer": durable, "topic": "bench.js",
                 "deliverPolicy": "new"}
        url = brokers["nats"].url
    else:
        attrs = {"subscriptions": [{"topic": "bench/mqtt", "qos": 1}]}
        url = brokers["mqtt"].url
    return {"t": {"kind": case, "numWorkers": WORKERS, "url": url, "attributes": attrs}}


def run_ours(case: str, brokers: dict[str, Any], n: int, durable: str, work: Path) -> float:
    config = function_config("stream_async:handler", triggers=trigger_for(case, brokers, durable),
                             runtime_attributes={"workerKind": "async"})
    config["spec"]["disableDefaultHTTPTrigger"] = True
    workdir = Path(tempfile.mkdtemp(dir=work))
    processor = RunningProcessor(config, workdir=workdir,
                                 function_dir=ROOT / "test" / "functions")
    try:
        processor.wait_ready()
        started = time.time()
        publish(case, brokers, n)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                done = processor.metric("nuclio_processor_handled_events_total")
            except AssertionError:
                done = 0
            if done >= n:
                return time.time() - started
            time.sleep(0.02)
        raise AssertionError(f"{case}: ours handled {done} of {n}\n{processor.logs[-2000:]}\n"
                             + "\n".join(line for line in processor.metrics().splitlines()
                                          if "rejected" in line))
    finally:
        processor.stop()


def run_bare(case: str, brokers: dict[str, Any], n: int, durable: str) -> float:
    args = [brokers["mqtt"].port if case == "mqtt" else brokers["nats"].url, n]
    if case == "nats-jetstream":
        args.append(durable)
    proc = subprocess.Popen([sys.executable, "-c", BARE[case], *map(str, args)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        started = time.time()
        publish(case, brokers, n)
        finished = float(proc.stdout.readline())
        return finished - started
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--cases", default="nats,nats-jetstream,mqtt")
    options = parser.parse_args()
    sizes = {"nats": options.messages * 3, "nats-jetstream": options.messages // 2,
             "mqtt": options.messages // 4}
    sizes = {case: n for case, n in sizes.items() if case in options.cases.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # max_queued_messages 0: keep every QoS 1 message for a slower consumer
        mosquitto = Mosquitto(work / "mqtt", persistence=False,
                              extra_config=["max_queued_messages 0"])
        brokers: dict[str, Any] = {"nats": NatsServer(work / "nats").start(),
                                   "mqtt": mosquitto.start()}
        try:
            asyncio.run(_add_stream(brokers["nats"].url))
            rates: dict[str, dict[str, list[float]]] = {
                case: {"ours": [], "bare": []} for case in sizes}
            for round_no in range(options.rounds):
                for case, n in sizes.items():
                    order = ("ours", "bare") if round_no % 2 == 0 else ("bare", "ours")
                    for who in order:
                        durable = f"{who}{round_no}"
                        seconds = run_ours(case, brokers, n, durable, work) if who == "ours" \
                            else run_bare(case, brokers, n, durable)
                        rates[case][who].append(n / seconds)
        finally:
            for broker in brokers.values():
                broker.stop()
    report(rates, sizes, options.rounds)


async def _add_stream(url: str) -> None:
    nc = await nats.connect(url)
    await nc.jetstream().add_stream(StreamConfig(name="BENCH", subjects=["bench.js"]))
    await nc.close()


def report(rates: dict[str, dict[str, list[float]]], sizes: dict[str, int], rounds: int) -> None:
    print(f"machine: {os.cpu_count()} cpus, python {sys.version.split()[0]}; "
          f"{rounds} rounds, medians")
    print(f"{'case':<16}{'messages':>10}{'ours msg/s':>14}{'bare msg/s':>14}{'ratio':>8}")
    lines = []
    for case, by in rates.items():
        ours, bare = statistics.median(by["ours"]), statistics.median(by["bare"])
        ratio = ours / bare
        print(f"{case:<16}{sizes[case]:>10}{ours:>14.0f}{bare:>14.0f}{ratio:>8.2f}")
        lines.append(f"{case}: {ratio:.2f} (target {TARGETS[case]})")
    print("\n".join(lines))
    print(json.dumps({c: {w: [round(r) for r in v] for w, v in by.items()}
                      for c, by in rates.items()}))


if __name__ == "__main__":
    main()
