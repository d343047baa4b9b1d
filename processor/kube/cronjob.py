"""Cron triggers as Kubernetes CronJobs, when the platform says ``cronTriggerCreationMode:
kube`` (Nuclio's switch).

As in Nuclio, the CronJob does not run the function itself: each tick starts a small
pod that sends the trigger's event to the function's HTTP trigger through its
Service, with the header ``x-nuclio-invoke-trigger: cron``; the long-running pods
(whose function.yaml has the cron triggers disabled, so they do not fire twice)
handle it. Our pod runs ``processor kube invoke`` from the processor's own image,
which builds the event with the cron trigger's own model.
"""

from __future__ import annotations

import re
from typing import Any

from core.config import ConfigError
from processor.kube.plan import Plan, TriggerPlan
from processor.kube.workload import (
    CONFIG_DIR,
    CONFIG_KEY,
    container_security,
    object_meta,
    pod_spec,
    pod_template,
)

EVERY = "@every "


def kube_schedule(trig: TriggerPlan) -> str:
    """The trigger's schedule in the form a CronJob takes (5 fields, a descriptor, or
    ``@every``, which Kubernetes' cron parser also accepts)."""
    attrs = trig.attributes
    path = f"{trig.resolved.yaml_path}.attributes"
    if attrs.interval is not None:
        return EVERY + attrs.interval.strip()
    schedule: str = attrs.schedule
    fields = schedule.split()
    if len(fields) == 6:  # Nuclio's seconds-first form
        if fields[0] != "0":
            raise ConfigError(f"{path}.schedule: a Kubernetes CronJob runs at whole minutes; "
                              f"expected the seconds field to be 0 (or 5 fields) with "
                              f"cronTriggerCreationMode: kube, got {schedule!r}")
        return " ".join(fields[1:])
    return schedule


def http_target(plan: Plan, trig: TriggerPlan, services: dict[str, tuple[str, int]]
                ) -> tuple[str, int]:
    """(Service name, port) of the function's first HTTP trigger."""
    for other in plan.triggers:
        if other.resolved.kind == "http" and other.resolved.name in services:
            return services[other.resolved.name]
    raise ConfigError(f"{trig.resolved.yaml_path}: with cronTriggerCreationMode: kube the "
                      "CronJob calls the function's HTTP trigger, and the function has none "
                      "(spec.disableDefaultHTTPTrigger is true and no http trigger is "
                      "configured); expected an http trigger")


def cron_jobs(plan: Plan, image: str, config_map: str,
              services: dict[str, tuple[str, int]]) -> list[dict[str, Any]]:
    objects = []
    for trig in plan.of_kind("cron"):
        service, port = http_target(plan, trig, services)
        attrs = trig.attributes
        if attrs.period() is not None and attrs.period() < 60:
            plan.warnings.append(f"{trig.resolved.yaml_path}.attributes: every tick starts a "
                                 f"pod; a period under a minute is costly as a CronJob")
        url = f"http://{service}.{plan.namespace}.svc:{port}"
        container = {
            "name": "invoke", "image": image,
            "args": ["processor", "kube", "invoke", "--config", f"{CONFIG_DIR}/{CONFIG_KEY}",
                     "--trigger", trig.resolved.key, "--url", url],
            "securityContext": container_security(),
            "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
        }
        if plan.deployer.resources:
            container["resources"] = plan.deployer.resources
        volumes = [{"name": "config", "configMap": {
            "name": config_map, "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]}}]
        spec = pod_spec(plan, [container], volumes, restart="Never")
        spec["terminationGracePeriodSeconds"] = 10
        # CronJob names: DNS labels of at most 52 characters (Kubernetes adds a suffix).
        key = re.sub(r"[^a-z0-9]+", "-", trig.resolved.key.lower()).strip("-") or "cron"
        name = f"{plan.name}-{key}"[:52].rstrip("-")
        objects.append({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": object_meta(plan, name),
            "spec": {
                "schedule": kube_schedule(trig),
                "concurrencyPolicy": attrs.concurrencyPolicy,
                "jobTemplate": {"spec": {"backoffLimit": attrs.jobBackoffLimit,
                                         "template": pod_template(plan, spec, {})}},
            },
        })
    return objects


def disable_cron(raw: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The function.yaml for the long-running pods: its cron triggers disabled, because
    the CronJobs fire them."""
    triggers = dict((raw.get("spec") or {}).get("triggers") or {})
    for trig in plan.of_kind("cron"):
        triggers[trig.resolved.key] = {**triggers[trig.resolved.key], "disabled": True}
    return {**raw, "spec": {**raw["spec"], "triggers": triggers}}
