"""The workflow step histogram, as /metrics shows it (the issue names its family)."""

from __future__ import annotations

from prometheus_client import generate_latest

from core.metrics import Metrics


def test_workflow_step_histogram_is_exported_with_its_labels() -> None:
    metrics = Metrics("chain")
    assert b"workflow_step" not in generate_latest(metrics.registry)  # not a workflow yet
    metrics.workflow_step("chain", "rotate", 0.004)
    metrics.workflow_step("chain", "rotate", 0.2)
    metrics.workflow_step("chain", "shrink", 0.001)
    text = generate_latest(metrics.registry).decode()
    labels = 'function="chain",step="rotate",workflow="chain"'
    assert f"nuclio_processor_workflow_step_duration_seconds_count{{{labels}}} 2.0" in text
    assert ('nuclio_processor_workflow_step_duration_seconds_bucket{function="chain",le="0.005",'
            'step="rotate",workflow="chain"} 1.0') in text
    assert "# TYPE nuclio_processor_workflow_step_duration_seconds histogram" in text
    assert 'step="shrink"' in text


def test_views_of_one_registry_share_one_family() -> None:
    """A processor hosting several functions gives each a copy of one Metrics (same
    registry): two workflows must still make one family, not two with the same name."""
    import copy

    metrics = Metrics("first")
    second = copy.copy(metrics)
    second.function_name = "second"
    metrics.workflow_step("first", "a", 0.01)
    second.workflow_step("second", "b", 0.01)
    text = generate_latest(metrics.registry).decode()
    assert text.count("# TYPE nuclio_processor_workflow_step_duration_seconds ") == 1
    assert 'function="first"' in text and 'function="second",le="+Inf",step="b"' in text
