"""One Service per trigger that listens, with a port per address it (and its sink) serves.

A Service per trigger, rather than one for the function, lets each keep Nuclio's
``serviceType`` (the http trigger's ``attributes.serviceType``, else ``spec.serviceType``,
else ClusterIP) and gives gRPC and RTSP ports their own ``appProtocol``. Health and
metrics are not in any Service: the kubelet probes the pod and Prometheus scrapes it.
"""

from __future__ import annotations

import re
from typing import Any

from processor.kube.plan import Plan
from processor.kube.ports import Port
from processor.kube.workload import object_meta, selector


def service_name(plan: Plan, trigger: str) -> str:
    clean = re.sub(r"[^a-z0-9]+", "-", trigger.lower()).strip("-") or "trigger"
    return f"{plan.name}-{clean}"[:63].rstrip("-")


def services(plan: Plan, ports: list[Port], replace: dict[str, list[Port]] | None = None
             ) -> list[dict[str, Any]]:
    """``replace`` maps a trigger to the ports that stand in for its own (an Envoy sidecar
    in front of an extproc trigger)."""
    by_trigger: dict[str, list[Port]] = {}
    for port in ports:
        if port.trigger is not None and port.exposed:
            by_trigger.setdefault(port.trigger, []).append(port)
    by_trigger.update(replace or {})
    objects = []
    for trig in plan.triggers:
        exposed = by_trigger.get(trig.resolved.name)
        if not exposed:
            continue
        kind = getattr(trig.attributes, "serviceType", None) if trig.resolved.kind == "http" \
            else None
        service_type = kind or plan.deployer.serviceType or "ClusterIP"
        spec_ports = []
        for port in exposed:
            item: dict[str, Any] = {"name": port.name, "port": port.number,
                                    "targetPort": port.name, "protocol": port.protocol}
            if port.app_protocol:
                item["appProtocol"] = port.app_protocol
            spec_ports.append(item)
        objects.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": object_meta(plan, service_name(plan, trig.resolved.name)),
            "spec": {"type": service_type, "selector": selector(plan), "ports": spec_ports},
        })
    return objects
