"""Nuclio's Prometheus families, under Nuclio's exact names and constant labels.

Dashboards and alerts written for Nuclio query these sample names with the labels
``instance, trigger_kind, trigger_id, namespace, function`` (plus ``result`` or
``worker_index``); after known traffic the values must be exact.
"""

from __future__ import annotations

import re

import requests

from test.conftest import free_port, function_config

NUCLIO = ("instance", "trigger_kind", "trigger_id", "namespace", "function")
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$')


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2)))
            out.append((match.group(1), labels, float(match.group(3))))
    return out


def _only(samples: list[tuple[str, dict[str, str], float]], name: str,
          **labels: str) -> tuple[dict[str, str], float]:
    found = [(lbl, v) for n, lbl, v in samples
             if n == name and all(lbl.get(k) == val for k, val in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_handled_events_and_allocations_have_nuclio_names_and_labels(start_processor):
    port = free_port()
    config = function_config("faults:handler", port=port, workers=2, name="metric-fn")
    config["metadata"]["namespace"] = "team-a"
    proc = start_processor(config)
    base = f"http://127.0.0.1:{port}"
    for _ in range(5):
        assert requests.get(base + "/ok", timeout=10).status_code == 200
    for _ in range(2):
        assert requests.get(base + "/raise", timeout=10).status_code == 500
    samples = _samples(proc.metrics())
    expected = {"instance": "team-a-metric-fn", "trigger_kind": "http", "trigger_id": "http",
                "namespace": "team-a", "function": "metric-fn"}

    labels, value = _only(samples, "nuclio_processor_handled_events_total", result="success")
    assert value == 5
    assert labels == {**expected, "result": "success"}
    labels, value = _only(samples, "nuclio_processor_handled_events_total", result="failure")
    assert value == 2
    assert labels == {**expected, "result": "failure"}

    # Sequential requests always find an idle worker.
    allocation = "nuclio_processor_worker_allocation_total"
    assert _only(samples, allocation, result="success_immediate")[1] == 7
    assert _only(samples, allocation, result="success_after_wait")[1] == 0
    assert _only(samples, allocation, result="error_timeout")[1] == 0
    labels, value = _only(samples, "nuclio_processor_worker_allocation_count")
    assert (labels, value) == (expected, 7)
    labels, value = _only(samples,
                          "nuclio_processor_worker_allocation_wait_duration_milliseconds_sum")
    assert (labels, value) == (expected, 0)
    # Both workers idle at every allocation: 100% each time, summed as Nuclio does.
    labels, value = _only(samples,
                          "nuclio_processor_worker_allocation_workers_available_percentage")
    assert (labels, value) == (expected, 700)

    # Per worker: sequential requests all go to worker 0 (the last one released).
    counts = {lbl["worker_index"]: v for n, lbl, v in samples
              if n == "nuclio_processor_handled_events_duration_milliseconds_count"}
    sums = {lbl["worker_index"]: v for n, lbl, v in samples
            if n == "nuclio_processor_handled_events_duration_milliseconds_sum"}
    assert set(counts) == set(sums) == {"0", "1"}
    assert sum(counts.values()) == 7
    assert sums["0"] > 0
    labels, _ = _only(samples, "nuclio_processor_handled_events_duration_milliseconds_sum",
                      worker_index="0")
    assert labels == {**expected, "worker_index": "0"}

    # Our own families keep their names and labels; the old non-Nuclio names are gone.
    names = {n for n, _, _ in samples}
    assert "nuclio_processor_event_latency_seconds_count" in names
    for old in ("nuclio_processor_worker_allocation_success_immediate_total",
                "nuclio_processor_worker_allocation_success_after_wait_total",
                "nuclio_processor_worker_allocation_timeout_total",
                "nuclio_processor_worker_allocation_wait_duration_ms_sum"):
        assert old not in names


def test_instance_label_follows_nuclio_rules(monkeypatch):
    """The sink's ``instanceName`` template, else NUCLIO_FUNCTION_INSTANCE, else
    ``<namespace>-<name>`` (Nuclio's pull sink configuration)."""
    from core.metrics import instance_name

    monkeypatch.delenv("NUCLIO_FUNCTION_INSTANCE", raising=False)
    assert instance_name(None, "ns", "fn") == "ns-fn"
    assert instance_name("{{ .Namespace }}/{{.Name}}-pod", "ns", "fn") == "ns/fn-pod"
    monkeypatch.setenv("NUCLIO_FUNCTION_INSTANCE", "pod-7")
    assert instance_name(None, "ns", "fn") == "pod-7"
    assert instance_name("fixed", "ns", "fn") == "fixed"
