"""Autoscaling: an HPA from Nuclio's minReplicas/maxReplicas/targetCPU, or, for the
NATS-backed async queue, a KEDA ScaledObject on the JetStream consumer's backlog.

KEDA makes an HPA of its own, and two HPAs on one Deployment fight, so with KEDA the
CPU target goes into the ScaledObject as a second trigger instead. KEDA's CRD schema
cannot be had from a package here; ``check_scaled_object`` is a structural check of
the fields we write (see the README).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from invocations.jetstream_codec import function_stream
from processor.kube.plan import DEFAULT_TARGET_CPU, AsyncSettings, Plan
from processor.kube.workload import object_meta


def _bounds(plan: Plan) -> tuple[int, int] | None:
    """(min, max) when the config asks for autoscaling: maxReplicas above minReplicas."""
    d = plan.deployer
    low = d.minReplicas if d.minReplicas is not None else 1
    if d.maxReplicas is None or d.maxReplicas <= low:
        return None
    return low, d.maxReplicas


def _cpu_target(plan: Plan) -> int:
    d = plan.deployer
    if not ((d.resources or {}).get("requests") or {}).get("cpu"):
        plan.warnings.append("spec.resources.requests.cpu: not set, so a CPU utilization "
                             "target has nothing to compare with: set it for autoscaling")
    return d.targetCPU or DEFAULT_TARGET_CPU


def hpa(plan: Plan) -> dict[str, Any] | None:
    bounds = _bounds(plan)
    if bounds is None:
        return None
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(plan, plan.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": plan.name},
            "minReplicas": max(1, bounds[0]), "maxReplicas": bounds[1],
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": _cpu_target(plan)}}}],
        },
    }


def monitoring_endpoint(settings: AsyncSettings) -> str:
    nats = settings.nats
    if nats.monitoringEndpoint:
        return nats.monitoringEndpoint
    return f"{urlsplit(nats.url).hostname or 'nats'}:8222"


def scaled_object(plan: Plan) -> dict[str, Any] | None:
    settings = plan.async_settings
    if settings is None or settings.backend != "nats":
        return None
    d = plan.deployer
    nats = settings.nats
    triggers: list[dict[str, Any]] = [{"type": "nats-jetstream", "metadata": {
        "natsServerMonitoringEndpoint": monitoring_endpoint(settings),
        # The processor's queue for this function: one work-queue stream per function.
        "account": nats.account, "stream": function_stream(nats.stream, plan.name)[0],
        "consumer": nats.consumer,
        "lagThreshold": str(nats.lagThreshold)}}]
    if d.targetCPU or _bounds(plan):
        triggers.append({"type": "cpu", "metricType": "Utilization",
                         "metadata": {"value": str(_cpu_target(plan))}})
    bounds = _bounds(plan)
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": object_meta(plan, plan.name),
        "spec": {
            "scaleTargetRef": {"name": plan.name},
            "minReplicaCount": bounds[0] if bounds else (d.minReplicas or 1),
            "maxReplicaCount": bounds[1] if bounds else max(d.maxReplicas or 10, 1),
            "triggers": triggers,
        },
    }


def check_scaled_object(obj: dict[str, Any], deployment: str) -> list[str]:
    """Problems in a ScaledObject, as KEDA's CRD (keda.sh/v1alpha1) would see them."""
    problems = []
    if obj.get("apiVersion") != "keda.sh/v1alpha1" or obj.get("kind") != "ScaledObject":
        problems.append("apiVersion/kind: expected keda.sh/v1alpha1 ScaledObject")
    meta = obj.get("metadata") or {}
    if not isinstance(meta.get("name"), str) or not meta.get("name"):
        problems.append("metadata.name: required")
    spec = obj.get("spec") or {}
    allowed = {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "triggers",
               "pollingInterval", "cooldownPeriod", "idleReplicaCount", "fallback", "advanced"}
    problems += [f"spec.{k}: unknown field" for k in spec if k not in allowed]
    if (spec.get("scaleTargetRef") or {}).get("name") != deployment:
        problems.append(f"spec.scaleTargetRef.name: expected {deployment!r}")
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
        problems.append("spec.minReplicaCount/maxReplicaCount: expected integers, min <= max")
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        problems.append("spec.triggers: expected a non-empty list")
        return problems
    for n, trig in enumerate(triggers):
        metadata = trig.get("metadata")
        if not isinstance(trig.get("type"), str):
            problems.append(f"spec.triggers[{n}].type: required string")
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            problems.append(f"spec.triggers[{n}].metadata: expected a map of strings")
        elif trig.get("type") == "nats-jetstream":
            for key in ("natsServerMonitoringEndpoint", "stream", "consumer"):
                if not metadata.get(key):
                    problems.append(f"spec.triggers[{n}].metadata.{key}: required")
    return problems
