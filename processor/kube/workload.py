"""The pod, and the Deployment, Job or CronJobs that run it.

Probes and timings map onto the processor's life cycle (``processor/app.py``):
health and metrics listen before ``init_context`` runs, ``/ready`` turns 200 once
every trigger listens, and SIGTERM drains in-flight events for up to each
trigger's ``workerTerminationTimeout``. So: a startupProbe on ``/ready`` allowed
``spec.readinessTimeoutSeconds``; liveness on ``/live``; readiness on ``/ready``;
a ``preStop`` sleep so endpoints stop routing before SIGTERM; and a grace period
that covers the drains.
"""

from __future__ import annotations

import math
import os
import posixpath
from typing import Any

from processor.kube.plan import Plan
from processor.kube.ports import Port, health_port

CONFIG_DIR = "/etc/nuclio/config/processor"
PLATFORM_DIR = "/etc/nuclio/config/platform"
CODE_DIR = "/etc/nuclio/function"
CONFIG_KEY = "processor.yaml"  # Nuclio's file name for the function config
PLATFORM_KEY = "platform.yaml"
USER_ID = 10001  # docker/Dockerfile's nuclio user
PRESTOP_SECONDS = 5
GRACE_MARGIN_SECONDS = 5
PROBE_PERIOD = 2  # startupProbe period: readinessTimeoutSeconds / this = failureThreshold
DEFAULT_IMAGE = "nuclio-py-processor:latest"


def labels(plan: Plan) -> dict[str, str]:
    """Selector labels (stable) plus the function's own metadata.labels."""
    own = {str(k): str(v) for k, v in plan.loaded.function.metadata.labels.items()}
    return {**own, **selector(plan), "app.kubernetes.io/name": plan.name,
            "app.kubernetes.io/managed-by": "nuclio-py-processor"}


def selector(plan: Plan) -> dict[str, str]:
    return {"nuclio.io/function-name": plan.name}


def object_meta(plan: Plan, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": plan.namespace, "labels": labels(plan)}
    annotations = {str(k): str(v) for k, v in plan.loaded.function.metadata.annotations.items()}
    if annotations:
        meta["annotations"] = annotations
    return meta


def grace_seconds(plan: Plan) -> int:
    """preStop + the drains (the processor drains trigger after trigger, each up to its
    workerTerminationTimeout; an extproc trigger's gRPC grace runs alongside) + margin."""
    drains = 0.0
    for trig in plan.triggers:
        own = getattr(trig.attributes, "gracefulShutdownTimeout", 0.0) \
            if trig.resolved.kind == "extproc" else 0.0
        drains += max(trig.resolved.termination_timeout, own)
    return PRESTOP_SECONDS + math.ceil(drains) + GRACE_MARGIN_SECONDS


def _env(plan: Plan, code_inlined: bool) -> list[dict[str, Any]]:
    """spec.env as the container's env; ``valueFrom`` entries (secrets, fields) pass
    through as Kubernetes writes them."""
    raw_env = (plan.raw.get("spec") or {}).get("env") or []
    env: list[dict[str, Any]] = []
    for raw, var in zip(raw_env, plan.loaded.function.spec.env, strict=True):
        if isinstance(raw, dict) and "valueFrom" in raw:
            env.append({"name": var.name, "valueFrom": raw["valueFrom"]})
        else:
            env.append({"name": var.name, "value": var.value})
    if code_inlined:
        env.append({"name": "NUCLIO_FUNCTION_CODE_DIR", "value": CODE_DIR})
    return env


def volumes(plan: Plan, config_map: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ConfigMap's files where the image's entrypoint looks for them, and writable
    emptyDirs for what the processor writes under a read-only root filesystem."""
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map,
                                         "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]}},
        {"name": "platform", "configMap": {"name": config_map,
                                           "items": [{"key": PLATFORM_KEY,
                                                      "path": PLATFORM_KEY}]}},
        # Inline functionSourceCode is written under /tmp; so are Python's temporary files.
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "platform", "mountPath": PLATFORM_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if plan.code_file:
        key = os.path.basename(plan.code_file)
        volumes.append({"name": "code", "configMap": {"name": config_map,
                                                      "items": [{"key": key, "path": key}]}})
        mounts.append({"name": "code", "mountPath": CODE_DIR, "readOnly": True})
    writable = []
    settings = plan.async_settings
    if settings is not None and settings.backend == "sqlite":
        writable.append(("async-queue", settings.queue_directory()))
    for trig in plan.of_kind("job"):
        output = trig.attributes.outputFile
        if output and not posixpath.dirname(output).startswith("/tmp"):
            writable.append((f"job-output-{len(writable)}", posixpath.dirname(output)))
    # A volume of the user's own (a PersistentVolumeClaim for the queue, say) at one of
    # these paths replaces our emptyDir there.
    own_paths = {item.get("volumeMount", {}).get("mountPath") for item in plan.deployer.volumes}
    for name, path in writable:
        if path not in own_paths:
            volumes.append({"name": name, "emptyDir": {}})
            mounts.append({"name": name, "mountPath": path})
    for n, item in enumerate(plan.deployer.volumes):  # Nuclio: [{volume, volumeMount}]
        if "volume" in item:
            volumes.append(item["volume"])
        if "volumeMount" in item:
            mounts.append(item["volumeMount"])
        if not {"volume", "volumeMount"} & set(item):
            plan.warnings.append(f"spec.volumes[{n}]: expected 'volume' and 'volumeMount'")
    return volumes, mounts


def _probes(plan: Plan, ports: list[Port], run_once: bool) -> dict[str, Any]:
    health = health_port(ports)
    if health is None:
        plan.warnings.append("healthCheck.enabled is false: the pod gets no probes")
        return {}
    live = {"httpGet": {"path": "/live", "port": health.name}, "periodSeconds": 10,
            "timeoutSeconds": 2, "failureThreshold": 3}
    if run_once:  # a Job is never a Service endpoint: liveness only
        return {"livenessProbe": live}
    timeout = plan.deployer.readinessTimeoutSeconds
    return {
        # /ready is 200 once init_context has run on every worker and every trigger listens.
        "startupProbe": {"httpGet": {"path": "/ready", "port": health.name},
                         "periodSeconds": PROBE_PERIOD, "timeoutSeconds": 2,
                         "failureThreshold": max(1, math.ceil(timeout / PROBE_PERIOD))},
        "livenessProbe": live,
        "readinessProbe": {"httpGet": {"path": "/ready", "port": health.name},
                           "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2},
    }


def container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def processor_container(plan: Plan, ports: list[Port], image: str, *, run_once: bool,
                        mounts: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "processor",
        "image": image,
        "args": ["--platform-config", f"{PLATFORM_DIR}/{PLATFORM_KEY}"],
        "ports": [{"name": p.name, "containerPort": p.number, "protocol": p.protocol}
                  for p in ports],
        "env": _env(plan, plan.code_file is not None),
        "securityContext": container_security(),
        "volumeMounts": mounts,
        **_probes(plan, ports, run_once),
    }
    if plan.deployer.imagePullPolicy:
        container["imagePullPolicy"] = plan.deployer.imagePullPolicy
    if plan.deployer.resources:
        container["resources"] = plan.deployer.resources
    if not run_once:
        # Endpoints controllers and proxies need a moment to stop routing here; SIGTERM
        # (the drain) comes after.
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep",
                                                                   str(PRESTOP_SECONDS)]}}}
    return container


def pod_spec(plan: Plan, containers: list[dict[str, Any]], volumes: list[dict[str, Any]],
             *, restart: str = "Always") -> dict[str, Any]:
    d = plan.deployer
    security = {"runAsNonRoot": True, "runAsUser": USER_ID, "runAsGroup": USER_ID,
                "fsGroup": USER_ID, "seccompProfile": {"type": "RuntimeDefault"},
                **(d.securityContext or {})}
    spec: dict[str, Any] = {
        "containers": containers,
        "volumes": volumes,
        "securityContext": security,
        "terminationGracePeriodSeconds": grace_seconds(plan),
        "restartPolicy": restart,
        # Service links would put every Service's address in the env (names can collide
        # with spec.env); the processor does not call the Kubernetes API.
        "enableServiceLinks": False,
        "automountServiceAccountToken": d.serviceAccount is not None,
    }
    optional = {"serviceAccountName": d.serviceAccount, "nodeSelector": d.nodeSelector,
                "nodeName": d.nodeName, "affinity": d.affinity, "tolerations": d.tolerations,
                "priorityClassName": d.priorityClassName,
                "preemptionPolicy": d.preemptionPolicy}
    spec.update({k: v for k, v in optional.items() if v is not None})
    if d.imagePullSecrets:
        spec["imagePullSecrets"] = [{"name": d.imagePullSecrets}]
    return spec


def pod_template(plan: Plan, spec: dict[str, Any], annotations: dict[str, str]
                 ) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": labels(plan)}
    own = {str(k): str(v) for k, v in plan.loaded.function.metadata.annotations.items()}
    if own or annotations:
        meta["annotations"] = {**own, **annotations}
    return {"metadata": meta, "spec": spec}


def replicas(plan: Plan) -> int:
    d = plan.deployer
    if d.replicas is not None:
        return d.replicas
    return d.minReplicas if d.minReplicas is not None else 1


def deployment(plan: Plan, template: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": object_meta(plan, plan.name),
        "spec": {
            "replicas": replicas(plan),
            "selector": {"matchLabels": selector(plan)},
            # One new pod at a time, none removed before its replacement is ready.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": template,
        },
    }


def job(plan: Plan, template: dict[str, Any]) -> dict[str, Any]:
    backoff = max(t.attributes.jobBackoffLimit for t in plan.of_kind("job"))
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": object_meta(plan, plan.name),
        "spec": {
            "backoffLimit": backoff,
            # Exit 2 is a configuration error: a retry would fail the same way.
            "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
                "containerName": "processor", "operator": "In", "values": [2]}}]},
            "template": template,
        },
    }
