"""Job and cron triggers, through the real processor."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from test.conftest import FUNCTIONS, run_processor_once
from test.support import free_port, platform_config


def _job_config(event: dict[str, Any], **attributes: Any) -> dict[str, Any]:
    return {"apiVersion": "nuclio.io/v1", "kind": "NuclioFunction",
            "metadata": {"name": "job-fn"},
            "spec": {"handler": "job_fn:handler", "eventTimeout": "1s",
                     "disableDefaultHTTPTrigger": True,
                     "triggers": {"once": {"kind": "job",
                                           "attributes": {"event": event, **attributes}}}}}


def _run(tmp_path: Path, config: dict[str, Any], env: dict[str, str] | None = None):
    config_path = tmp_path / "function.yaml"
    config_path.write_text(yaml.safe_dump(config))
    platform_path = tmp_path / "platform.yaml"
    platform_path.write_text(yaml.safe_dump(platform_config(free_port(), free_port())))
    started = time.monotonic()
    result = run_processor_once(["--config", str(config_path), "--platform-config",
                                 str(platform_path), "--function-dir", str(FUNCTIONS)],
                                env=env)
    return result, time.monotonic() - started


def _log(result, message: str) -> dict[str, Any]:
    for line in result.stdout.splitlines():
        if line.startswith("{") and json.loads(line)["message"] == message:
            return json.loads(line)
    raise AssertionError(f"no {message!r} log line in:\n{result.stdout}")


def test_job_success_writes_output_and_exits_0(tmp_path):
    output = tmp_path / "out.json"
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    result, elapsed = _run(tmp_path, _job_config(
        {"path": "/ok?x=1", "body": {"a": [1, 2]}, "headers": {"X-Job": "yes"}},
        outputFile=str(output)))
    assert result.returncode == 0, result.stdout
    written = json.loads(output.read_text())
    assert written["got"] == {"a": [1, 2]}  # a YAML mapping is sent as JSON
    assert written["content_type"] == "application/json"
    assert written["method"] == "POST" and written["fields"] == {"x": "1"}
    assert written["header"] == "yes"
    stamp = datetime.datetime.fromisoformat(written["timestamp"])
    assert abs((stamp - before).total_seconds()) < 10  # the real start time
    assert "the function answered 200" in _log(result, "Job succeeded")["with"]["reason"]
    assert elapsed < 10  # no fixed delays before exit


def test_job_201_is_success_and_output_env(tmp_path):
    output = tmp_path / "env-out.txt"
    result, _ = _run(tmp_path, _job_config({"path": "/created"}),
                     env={"JOB_OUTPUT_FILE": str(output)})
    assert result.returncode == 0, result.stdout
    assert output.read_text() == "made"


@pytest.mark.parametrize(("path", "reason"), [
    ("/raise", "the function answered 500"),
    ("/bad", "the function answered 400: bad input"),
    ("/slow", "the function answered 408"),
])
def test_job_failures_exit_1_with_reason(tmp_path, path, reason):
    result, elapsed = _run(tmp_path, _job_config({"path": path}))
    assert result.returncode == 1, result.stdout
    assert reason in _log(result, "Job failed")["with"]["reason"]
    assert elapsed < 8  # the 1 s eventTimeout ended the 10 s handler


def test_job_success_statuses_are_configurable(tmp_path):
    result, _ = _run(tmp_path, _job_config({"path": "/bad"}, successStatuses=[200, 400]))
    assert result.returncode == 0, result.stdout


def test_job_stops_the_other_triggers(tmp_path):
    config = _job_config({"path": "/ok"})
    port = free_port()
    config["spec"]["triggers"]["web"] = {"kind": "http", "url": f"127.0.0.1:{port}"}
    result, elapsed = _run(tmp_path, config)
    assert result.returncode == 0, result.stdout
    assert "HTTP trigger listening" in result.stdout
    assert elapsed < 10


def _cron_config(ticks: Path, attributes: dict[str, Any], **trigger: Any) -> dict[str, Any]:
    return {"metadata": {"name": "cron-fn"},
            "spec": {"handler": "cron_fn:handler", "disableDefaultHTTPTrigger": True,
                     "env": [{"name": "TICKS_FILE", "value": str(ticks)}],
                     "triggers": {"tick": {"kind": "cron", "attributes": attributes,
                                           **trigger}}}}


def _ticks(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("attributes", [{"schedule": "@every 1s"}, {"interval": "1s"},
                                        {"schedule": "* * * * * *"}])
def test_cron_ticks_every_second(start_processor, tmp_path, attributes):
    ticks = tmp_path / "ticks.txt"
    attributes = {**attributes, "event": {"body": "payload", "path": "/cron"}}
    proc = start_processor(_cron_config(ticks, attributes))
    time.sleep(3.5)
    count = len(_ticks(ticks))
    assert 2 <= count <= 5, _ticks(ticks)
    assert _ticks(ticks)[0] == "cron POST /cron b'payload'"  # POST: the event has a body
    assert proc.stop() == 0


def test_slow_cron_handler_skips_ticks_and_counts_them(start_processor, tmp_path):
    ticks = tmp_path / "ticks.txt"
    config = _cron_config(ticks, {"interval": "250ms"}, numWorkers=1,
                          workerAvailabilityTimeoutMilliseconds=100)
    config["spec"]["env"].append({"name": "TICK_SLEEP", "value": "1"})
    proc = start_processor(config)
    time.sleep(3.2)
    handled = len(_ticks(ticks))
    assert 2 <= handled <= 4  # one tick per second gets through, the rest are skipped
    # Each tick waits 100 ms for the busy worker, then is skipped: about 3 of 4 per second.
    assert proc.metric("nuclio_processor_rejected_events_total", reason="no_worker") >= 5
    assert proc.metric("nuclio_processor_worker_allocation_total", result="error_timeout") >= 1


@pytest.mark.parametrize(("attributes", "expected"), [
    ({"schedule": "every day"}, "spec.triggers.tick.attributes.schedule"),
    ({"interval": "soon"}, "spec.triggers.tick.attributes.interval"),
    ({}, "exactly one of 'interval' or 'schedule'"),
    ({"interval": "1s", "schedule": "@hourly"}, "exactly one of"),
])
def test_bad_cron_attributes_are_config_errors(tmp_path, attributes, expected):
    result, _ = _run(tmp_path, _cron_config(tmp_path / "t.txt", attributes))
    assert result.returncode == 2, result.stdout
    assert expected in result.stdout


def test_cron_ticks_never_pile_up(start_processor, tmp_path):
    """With a long availability timeout, one tick waits and the others are dropped."""
    ticks = tmp_path / "ticks.txt"
    config = _cron_config(ticks, {"interval": "200ms"}, numWorkers=1)
    config["spec"]["env"].append({"name": "TICK_SLEEP", "value": "1"})
    proc = start_processor(config)
    time.sleep(2.5)
    assert len(_ticks(ticks)) <= 3
    assert proc.metric("nuclio_processor_rejected_events_total", reason="tick_overlap") >= 5
    assert proc.metric("nuclio_processor_workers_busy") == 1
