"""One function.yaml -> the list of Kubernetes objects that run it.

The choice of workload follows the processor's own semantics: a config with a
``job`` trigger runs once and exits (the processor stops when the job is done),
so it is a Job; anything else runs until stopped, so it is a Deployment, with a
Service per listening trigger, an HPA (or a KEDA ScaledObject for the NATS async
queue), the Envoy side of an extproc trigger, and, in the platform's
``cronTriggerCreationMode: kube``, a CronJob per cron trigger.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from processor.kube import cronjob, envoy, scaling, service, workload
from processor.kube.envoy import EnvoyOptions
from processor.kube.plan import Plan, build_plan
from processor.kube.ports import Port, derive_ports, metrics_port


@dataclass(frozen=True)
class RenderOptions:
    image: str | None = None
    namespace: str | None = None
    function_dir: str | None = None
    code_in_image: bool = False
    keda: bool = True
    envoy: EnvoyOptions = field(default_factory=EnvoyOptions)


@dataclass
class Rendered:
    plan: Plan
    objects: list[dict[str, Any]]

    @property
    def warnings(self) -> list[str]:
        return self.plan.warnings


def _function_yaml(plan: Plan) -> str:
    """The ConfigMap's function.yaml: the file as written, unless the pods must see it
    changed (kube-mode cron triggers disabled; ``valueFrom`` env left to Kubernetes,
    since the processor would set those variables to an empty value)."""
    raw = plan.raw
    changed = False
    if plan.cron_mode == "kube" and plan.of_kind("cron"):
        raw = cronjob.disable_cron(raw, plan)
        changed = True
    env = (raw.get("spec") or {}).get("env") or []
    if any(isinstance(e, dict) and "valueFrom" in e for e in env):
        kept = [e for e in env if not (isinstance(e, dict) and "valueFrom" in e)]
        raw = {**raw, "spec": {**raw["spec"], "env": kept}}
        changed = True
    if not changed:
        return plan.raw_text
    return ("# Rendered by `processor kube render` from " + os.path.basename(plan.source)
            + " (see its README section)\n" + yaml.safe_dump(raw, sort_keys=False))


def config_map(plan: Plan, name: str) -> dict[str, Any]:
    data = {workload.CONFIG_KEY: _function_yaml(plan), workload.PLATFORM_KEY: plan.platform_text}
    if plan.code_file:
        with open(plan.code_file, encoding="utf-8") as handle:
            data[os.path.basename(plan.code_file)] = handle.read()
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": workload.object_meta(plan, name),
            "data": data}


def _digest(obj: dict[str, Any]) -> str:
    return hashlib.sha256(yaml.safe_dump(obj["data"], sort_keys=True).encode()).hexdigest()[:16]


def _scrape_annotations(plan: Plan, ports: list[Port]) -> dict[str, str]:
    found = metrics_port(ports, plan.platform)
    if found is None:
        return {}
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(found[0]),
            "prometheus.io/path": "/metrics"}


def render_plan(plan: Plan, options: RenderOptions) -> Rendered:
    image = options.image or plan.deployer.image or workload.DEFAULT_IMAGE
    ports = derive_ports(plan)
    run_once = bool(plan.of_kind("job"))
    if run_once and len(plan.triggers) > len(plan.of_kind("job")):
        plan.warnings.append("spec.triggers: a job trigger ends the processor when its event "
                             "is done, so this renders a Job; the other triggers stop with it")
    cm_name = f"{plan.name}-config"
    objects: list[dict[str, Any]] = [config_map(plan, cm_name)]
    volumes, mounts = workload.volumes(plan, cm_name)
    containers = [workload.processor_container(plan, ports, image, run_once=run_once,
                                               mounts=mounts)]
    replace: dict[str, list[Port]] = {}
    extproc = plan.of_kind("extproc")
    if extproc and options.envoy.mode != "none":
        if len(extproc) > 1:
            plan.warnings.append("spec.triggers: several extproc triggers; the Envoy config "
                                 f"is rendered for the first, {extproc[0].resolved.name!r}")
        envoy_cm = f"{plan.name}-envoy"
        config = envoy.envoy_config(plan, extproc[0], options.envoy)
        objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": workload.object_meta(plan, envoy_cm),
                        "data": {"envoy.yaml": yaml.safe_dump(config, sort_keys=False)}})
        if options.envoy.mode == "sidecar" and not run_once:
            container, volume, port = envoy.sidecar(options.envoy, envoy_cm,
                                                    workload.PRESTOP_SECONDS)
            containers.append(container)
            volumes.append(volume)
            # The Service fronts Envoy; the processor's extproc port stays inside the pod.
            replace[extproc[0].resolved.name] = [Port(port.name, port.number, port.yaml_path,
                                                      app_protocol="http",
                                                      trigger=extproc[0].resolved.name)]
    spec = workload.pod_spec(plan, containers, volumes,
                             restart="Never" if run_once else "Always")
    annotations = {**_scrape_annotations(plan, ports),
                   "nuclio.io/config-digest": _digest(objects[0])}
    template = workload.pod_template(plan, spec, annotations)
    if run_once:
        objects.append(workload.job(plan, template))
        return Rendered(plan, objects)
    deployment = workload.deployment(plan, template)
    objects.append(deployment)
    objects.extend(service.services(plan, ports, replace))
    scaler = (scaling.scaled_object(plan) if options.keda else None) or scaling.hpa(plan)
    if scaler is not None:
        objects.append(scaler)
        # The autoscaler owns the replica count: a re-apply must not reset it.
        del deployment["spec"]["replicas"]
    if plan.cron_mode == "kube" and plan.of_kind("cron"):
        targets = {t.resolved.name: (service.service_name(plan, t.resolved.name), p.number)
                   for t in plan.triggers for p in ports
                   if p.trigger == t.resolved.name and t.resolved.kind == "http"}
        objects.extend(cronjob.cron_jobs(plan, image, cm_name, targets))
    return Rendered(plan, objects)


def render(config_path: str, platform_path: str | None, options: RenderOptions) -> Rendered:
    plan = build_plan(config_path, platform_path, namespace=options.namespace,
                      function_dir=options.function_dir, code_in_image=options.code_in_image)
    return render_plan(plan, options)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the files in ConfigMaps) as readable literal blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not any(c in value for c in "\t\r") and \
        not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.dump(o, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
                        for o in objects)
