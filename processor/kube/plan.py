"""What one function.yaml asks of Kubernetes, validated once before any object is built.

The function and platform configs go through the processor's own loaders, and each
trigger's attributes through its own model, so a config the processor refuses is
refused here with the same message. Nuclio's deployer keys (image, replicas,
resources, ...) are not in those models (they ignore unknown keys), so they are read
from the raw YAML: the ones listed in ``DEPLOYER_KEYS`` are rendered, any other key
gets a warning naming it. Nothing is dropped silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field

from core.config import DEFAULT_HTTP_PORT, ConfigError, validate_model
from core.function_config import (
    LoadedConfig,
    PlatformConfig,
    ResolvedTrigger,
    load_function_config,
    load_platform_config,
)
from fusion.workflow_config import parse_workflow
from invocations.config import DEFAULT_DIRECTORY, NatsSettings
from invocations.config import AsyncSettings as InvocationSettings
from runtime.handler import HandlerLoadError, check_module_exists, split_handler
from triggers.base import TriggerAttributes
from triggers.registry import configured_trigger

# spec keys the processor's model reads (kept in the ConfigMap, used by the processor).
MODEL_KEYS = {"handler", "runtime", "description", "env", "triggers", "eventTimeout",
              "disableDefaultHTTPTrigger", "runtimeAttributes", "build", "workflow"}
# Nuclio deployer keys rendered into the manifests.
DEPLOYER_KEYS = {"image", "imagePullPolicy", "imagePullSecrets", "replicas", "minReplicas",
                 "maxReplicas", "targetCPU", "resources", "nodeSelector", "nodeName",
                 "affinity", "tolerations", "priorityClassName", "preemptionPolicy",
                 "serviceAccount", "securityContext", "volumes", "serviceType",
                 "readinessTimeoutSeconds"}
BUILD_KEYS = {"functionSourceCode", "codeEntryType", "path"}
METADATA_KEYS = {"name", "namespace", "labels", "annotations"}
# Nuclio's default spec.readinessTimeoutSeconds, and its targetCPU when an HPA is made.
DEFAULT_READINESS_TIMEOUT = 120
DEFAULT_TARGET_CPU = 75
# Handler files up to this size travel in the ConfigMap (whose limit is 1 MiB in all).
MAX_INLINE_CODE = 256 * 1024
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NatsQueue(NatsSettings):
    """The async queue's NATS settings, as the processor reads them
    (``invocations.config.NatsSettings``), plus what only KEDA's scaler needs."""

    # KEDA's nats-jetstream scaler reads the server's HTTP monitoring port, not the client
    # port: default the url's host with port 8222.
    monitoringEndpoint: str | None = None
    account: str = "$G"
    lagThreshold: int = Field(10, ge=1)


class AsyncSettings(InvocationSettings):
    """``spec.triggers.<http>.attributes.async``: the processor's own model
    (``invocations.config.AsyncSettings``), so defaults and names cannot drift; the
    KEDA-only keys live under ``nats``."""

    nats: NatsQueue = Field(default_factory=NatsQueue)

    def queue_directory(self) -> str:
        return self.directory or DEFAULT_DIRECTORY


class Deployer(BaseModel):
    """Nuclio's deployer keys we render; Kubernetes' own schemas check the nested values."""

    model_config = ConfigDict(extra="ignore")
    image: str | None = None
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = None
    imagePullSecrets: str | None = None
    replicas: int | None = Field(None, ge=0)
    minReplicas: int | None = Field(None, ge=0)
    maxReplicas: int | None = Field(None, ge=1)
    targetCPU: int | None = Field(None, ge=1, le=100)
    resources: dict[str, Any] | None = None
    nodeSelector: dict[str, str] | None = None
    nodeName: str | None = None
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] | None = None
    priorityClassName: str | None = None
    preemptionPolicy: str | None = None
    serviceAccount: str | None = None
    securityContext: dict[str, Any] | None = None
    volumes: list[dict[str, Any]] = Field(default_factory=list)
    serviceType: Literal["ClusterIP", "NodePort", "LoadBalancer"] | None = None
    readinessTimeoutSeconds: int = Field(DEFAULT_READINESS_TIMEOUT, ge=1)


@dataclass
class TriggerPlan:
    resolved: ResolvedTrigger
    attributes: Any  # the trigger's own validated Attributes model
    shell: Any  # a Trigger instance with only config/attributes set, for its port methods
    async_settings: AsyncSettings | None = None


@dataclass
class Plan:
    source: str
    raw: dict[str, Any]
    raw_text: str
    loaded: LoadedConfig
    platform: PlatformConfig
    platform_text: str
    cron_mode: str
    deployer: Deployer
    triggers: list[TriggerPlan]
    name: str
    namespace: str
    code_file: str | None  # the handler module file to put in the ConfigMap, if any
    warnings: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[TriggerPlan]:
        return [t for t in self.triggers if t.resolved.kind == kind]

    @property
    def async_settings(self) -> AsyncSettings | None:
        return next((t.async_settings for t in self.triggers
                     if t.async_settings and t.async_settings.enabled), None)


def _read_raw(path: str) -> tuple[dict[str, Any], str]:
    with open(path, encoding="utf-8") as handle:  # load_function_config read it already
        text = handle.read()
    data = yaml.safe_load(text)
    return data, text


def _shell(cls: Any, resolved: ResolvedTrigger, attributes: TriggerAttributes) -> Any:
    """The trigger object without a pool: enough for the methods that derive its listen
    addresses from ``config`` and ``attributes`` (nothing is bound)."""
    shell = cls.__new__(cls)
    shell.config = resolved
    shell.attributes = attributes
    shell.name = resolved.name
    return shell


def _trigger_plans(loaded: LoadedConfig, warnings: list[str]) -> list[TriggerPlan]:
    plans = []
    for trig in loaded.triggers:
        cls, attributes, found = configured_trigger(trig)
        warnings.extend(found)
        attrs_path = f"{trig.yaml_path}.attributes"
        async_raw = trig.attributes.get("async") if trig.kind == "http" else None
        settings = None
        if async_raw is not None:
            settings = validate_model(AsyncSettings, async_raw, f"{attrs_path}.async")
        plans.append(TriggerPlan(trig, attributes, _shell(cls, trig, attributes), settings))
    # As Processor.build: the implicit default-http trigger yields when another trigger
    # listens on its port (openinference's REST port defaults to it too).
    taken = {port for p in plans if not p.resolved.implicit for port in p.shell.listen_ports()}
    return [p for p in plans if not (p.resolved.implicit and DEFAULT_HTTP_PORT in taken)]


def _deployer_warnings(raw: dict[str, Any], warnings: list[str]) -> None:
    spec = raw.get("spec") or {}
    for key in spec:
        if key not in MODEL_KEYS | DEPLOYER_KEYS:
            warnings.append(f"spec.{key}: not a key kube render maps; left out of the "
                            "manifests (it stays in the ConfigMap's function.yaml)")
    for key in (spec.get("build") or {}):
        if key not in BUILD_KEYS:
            warnings.append(f"spec.build.{key}: a build-time key; kube render builds no "
                            "image (build one from docker/Dockerfile and pass --image)")
    for key in (raw.get("metadata") or {}):
        if key not in METADATA_KEYS:
            warnings.append(f"metadata.{key}: not rendered")


def _credential_warnings(value: Any, path: str, warnings: list[str]) -> None:
    """A URL with a password in the function.yaml ends up in a ConfigMap, which is not a
    Secret: say where (never the value)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _credential_warnings(item, f"{path}.{key}", warnings)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _credential_warnings(item, f"{path}[{n}]", warnings)
    elif isinstance(value, str) and "://" in value:
        try:
            password = urlsplit(value.strip()).password
        except ValueError:
            return
        if password:
            warnings.append(f"{path}: holds a password, and the ConfigMap is not a Secret: "
                            "prefer an env var from a Secret (spec.env valueFrom)")


def _code_file(loaded: LoadedConfig, code_in_image: bool, warnings: list[str]) -> str | None:
    """The handler's module file when it can travel in the ConfigMap. Like the processor,
    a handler module that cannot be found is a config error (unless the code is baked
    into the image, which this machine cannot see)."""
    spec = loaded.function.spec
    if spec.workflow is not None and not spec.handler:
        parse_workflow(spec.workflow, "spec.workflow")  # the processor's own check
        return None  # a workflow function has no code of its own
    if spec.build.functionSourceCode or code_in_image:
        return None
    try:
        check_module_exists(spec.handler, loaded.function_dir)
    except HandlerLoadError as exc:
        raise ConfigError(f"spec.handler: {exc}") from None
    module, _ = split_handler(spec.handler)
    path = os.path.join(loaded.function_dir, module + ".py")
    if "." in module or not os.path.isfile(path):
        warnings.append(f"spec.handler: module {module!r} is a package; it is not put in the "
                        "ConfigMap: bake it into the image under /opt/nuclio")
        return None
    if os.path.getsize(path) > MAX_INLINE_CODE:
        warnings.append(f"spec.handler: {path} is over {MAX_INLINE_CODE} bytes; it is not put "
                        "in the ConfigMap: bake it into the image under /opt/nuclio")
        return None
    return path


def build_plan(config_path: str, platform_path: str | None, *, namespace: str | None = None,
               function_dir: str | None = None, code_in_image: bool = False) -> Plan:
    loaded = load_function_config(config_path, function_dir)
    platform = load_platform_config(platform_path)
    raw, raw_text = _read_raw(config_path)
    platform_raw: dict[str, Any] = {}
    platform_text = "# Built-in defaults: health :8082 (/live, /ready), metrics :8090.\n"
    if platform_path:
        with open(platform_path, encoding="utf-8") as handle:
            platform_text = handle.read()
        platform_raw = yaml.safe_load(platform_text) or {}
    cron_mode = platform_raw.get("cronTriggerCreationMode", "processor")
    if cron_mode not in ("processor", "kube"):
        raise ConfigError(f"{platform_path}: cronTriggerCreationMode: expected 'processor' or "
                          f"'kube', got {cron_mode!r}")
    warnings: list[str] = []
    _deployer_warnings(raw, warnings)
    _credential_warnings((raw.get("spec") or {}).get("triggers") or {}, "spec.triggers",
                         warnings)
    deployer = validate_model(Deployer, raw.get("spec") or {}, "spec")
    name = loaded.function.metadata.name
    if not _NAME.match(name) or len(name) > 52:
        raise ConfigError(f"metadata.name: expected a Kubernetes name (lower-case letters, "
                          f"digits and '-', starting with a letter, at most 52 characters so "
                          f"that suffixed object names fit), got {name!r}")
    return Plan(source=config_path, raw=raw, raw_text=raw_text, loaded=loaded,
                platform=platform, platform_text=platform_text, cron_mode=cron_mode,
                deployer=deployer, triggers=_trigger_plans(loaded, warnings), name=name,
                namespace=namespace or loaded.function.metadata.namespace,
                code_file=_code_file(loaded, code_in_image, warnings), warnings=warnings)
