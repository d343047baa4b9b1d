"""Nuclio function.yaml and platform.yaml, validated once at start-up.

Everything is checked here, at the edge, so the rest of the processor can
trust its inputs. Every failure is a ``ConfigError`` naming the YAML path and
what was expected; the CLI turns it into exit status 2.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from core.config import (
    DEFAULT_HTTP_PORT,
    Address,
    ConfigError,
    Duration,
    format_validation_error,
    parse_address,
    validate_model,
)
from core.fusion_config import FusionConfig
from runtime.handler import split_handler

__all__ = ["FusionConfig"]

DEFAULT_CONFIG_PATH = "/etc/nuclio/config/processor/processor.yaml"
DEFAULT_AVAILABILITY_TIMEOUT_MS = 10_000
DEFAULT_TERMINATION_TIMEOUT = 10.0


def _to_text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


# -- function.yaml --------------------------------------------------------------------
class _Lenient(BaseModel):
    # Deployer-only keys (image, resources, replicas, ...) are ignored, as Nuclio's
    # processor does. defer_build (here and on every config model): a model's validator
    # is built when it first validates, so the models of features a config does not use
    # cost nothing on the way to /ready (~8 ms of the processor's start-up).
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


class EnvVar(_Lenient):
    name: str = Field(min_length=1)
    value: Annotated[str, BeforeValidator(_to_text)] = ""


class BatchSpec(_Lenient):
    mode: Literal["enable", "disable", "enabled", "disabled", ""] = "disable"
    batchSize: int = Field(10, ge=1, le=10_000)
    timeout: Duration = 1.0

    @property
    def enabled(self) -> bool:
        return self.mode in ("enable", "enabled")


class TriggerSpec(_Lenient):
    kind: str = Field(min_length=1)
    name: str = ""
    url: str | None = None
    numWorkers: int | None = Field(None, ge=1, le=1024)
    maxWorkers: int | None = Field(None, ge=1, le=1024)
    workerAvailabilityTimeoutMilliseconds: int | None = Field(None, ge=0)
    workerTerminationTimeout: Duration | None = None
    disabled: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict)
    batch: BatchSpec | None = None
    # Nuclio keeps these on the trigger, not in attributes (used by the stream triggers).
    username: str | None = None
    password: str | None = None
    explicitAckMode: str | None = None


class BuildSpec(_Lenient):
    functionSourceCode: str | None = None
    path: str | None = None
    codeEntryType: str | None = None


class RuntimeAttributes(_Lenient):
    """Our own knobs live in Nuclio's free-form ``spec.runtimeAttributes`` map."""

    workerKind: Literal["auto", "process", "thread", "async"] = "auto"
    exposeTracebacks: bool = False
    maxWaitingEvents: int = Field(1024, ge=0)
    # Process kind only: events one worker may hold at once (1 = Nuclio's model).
    eventsPerWorker: int = Field(1, ge=1, le=16)


class Spec(_Lenient):
    # Empty only when ``workflow`` is set (a function made of calls to other functions).
    handler: str = ""
    runtime: str = "python"
    description: str = ""
    env: list[EnvVar] = Field(default_factory=list)
    triggers: dict[str, TriggerSpec] = Field(default_factory=dict)
    eventTimeout: Duration | None = None
    disableDefaultHTTPTrigger: bool = False
    runtimeAttributes: RuntimeAttributes = Field(default_factory=RuntimeAttributes)
    build: BuildSpec = Field(default_factory=BuildSpec)
    # Kept raw here; fusion's workflow module validates it (naming this file's YAML path).
    workflow: dict[str, Any] | None = None


class Metadata(_Lenient):
    name: str = "function"
    namespace: str = "default"
    labels: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)


class FunctionConfig(_Lenient):
    apiVersion: Literal["nuclio.io/v1", "nuclio.io/v1beta1"] | None = None
    kind: Literal["NuclioFunction"] | None = None
    metadata: Metadata = Field(default_factory=Metadata)
    spec: Spec


# -- platform.yaml --------------------------------------------------------------------
class Dashboard(_Lenient):
    """Our key under ``healthCheck`` (Nuclio ignores unknown platform keys): the live page
    and status API, and the frame preview (which shows camera content)."""

    enabled: bool = True
    preview: bool = True


class HealthCheck(_Lenient):
    enabled: bool = True
    listenAddress: str = ":8082"
    dashboard: Dashboard = Field(default_factory=Dashboard)


class MetricSink(_Lenient):
    kind: str
    url: str = ":8090"
    attributes: dict[str, Any] = Field(default_factory=dict)


class MetricsConfig(_Lenient):
    sinks: dict[str, MetricSink] = Field(default_factory=dict)
    system: list[str] = Field(default_factory=list)
    functions: list[str] = Field(default_factory=list)


class LoggerSink(_Lenient):
    kind: str = "stdout"
    attributes: dict[str, Any] = Field(default_factory=dict)


class LoggerRef(_Lenient):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    sink: str = "stdout"


class LoggerConfig(_Lenient):
    sinks: dict[str, LoggerSink] = Field(default_factory=dict)
    system: list[LoggerRef] = Field(default_factory=list)
    functions: list[LoggerRef] = Field(default_factory=list)


class PlatformConfig(_Lenient):
    healthCheck: HealthCheck = Field(default_factory=HealthCheck)
    metrics: MetricsConfig | None = None
    logger: LoggerConfig = Field(default_factory=LoggerConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)


# -- resolved views used by the rest of the processor -----------------------------
@dataclass(frozen=True)
class ResolvedTrigger:
    key: str
    name: str
    kind: str
    num_workers: int
    availability_timeout: float
    termination_timeout: float
    url: str | None
    attributes: dict[str, Any]
    batch: BatchSpec | None
    yaml_path: str
    # The default-http trigger Nuclio adds when the config names no http trigger.
    implicit: bool = False
    # Trigger-level keys in Nuclio's shape (``spec.triggers.<key>.username`` ...).
    username: str | None = None
    password: str | None = None
    explicit_ack_mode: str | None = None


@dataclass(frozen=True)
class LoadedConfig:
    function: FunctionConfig
    function_dir: str
    triggers: list[ResolvedTrigger]
    source: str



def _read_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None


def _materialise_inline_code(spec: Spec, handler_module: str) -> str:
    """Writes ``spec.build.functionSourceCode`` (base64) to a private directory."""
    source = spec.build.functionSourceCode or ""
    try:
        code = base64.b64decode(source, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("spec.build.functionSourceCode: expected base64-encoded source "
                          "code") from None
    directory = tempfile.mkdtemp(prefix="nuclio-function-")
    parts = handler_module.split(".")
    target_dir = os.path.join(directory, *parts[:-1])
    os.makedirs(target_dir, exist_ok=True)
    for depth in range(1, len(parts)):
        open(os.path.join(directory, *parts[:depth], "__init__.py"), "a").close()
    with open(os.path.join(target_dir, parts[-1] + ".py"), "wb") as handle:
        handle.write(code)
    return directory


def _resolve_triggers(spec: Spec, where: str = "") -> list[ResolvedTrigger]:
    """``where`` (``"<file>: "`` when several functions are loaded) starts every YAML path,
    so that any error about a trigger names its file."""
    resolved = []
    for key, trig in spec.triggers.items():
        path = f"{where}spec.triggers.{key}"
        if trig.disabled:
            continue
        workers = trig.numWorkers or trig.maxWorkers or 1
        timeout_ms = trig.workerAvailabilityTimeoutMilliseconds
        resolved.append(ResolvedTrigger(
            key=key,
            name=trig.name or key,
            kind=trig.kind,
            num_workers=workers,
            availability_timeout=(DEFAULT_AVAILABILITY_TIMEOUT_MS if timeout_ms is None
                                  else timeout_ms) / 1000.0,
            termination_timeout=(DEFAULT_TERMINATION_TIMEOUT if trig.workerTerminationTimeout
                                 is None else trig.workerTerminationTimeout),
            url=trig.url,
            attributes=trig.attributes,
            batch=trig.batch if trig.batch and trig.batch.enabled else None,
            yaml_path=path,
            username=trig.username, password=trig.password,
            explicit_ack_mode=trig.explicitAckMode,
        ))
    has_http = any(t.kind == "http" for t in spec.triggers.values())
    if not has_http and not spec.disableDefaultHTTPTrigger:
        resolved.append(ResolvedTrigger(
            key="default-http", name="default-http", kind="http", num_workers=1,
            availability_timeout=DEFAULT_AVAILABILITY_TIMEOUT_MS / 1000.0,
            termination_timeout=DEFAULT_TERMINATION_TIMEOUT, url=None,
            attributes={"port": DEFAULT_HTTP_PORT}, batch=None,
            yaml_path=f"{where}spec.triggers.default-http (implicit)", implicit=True))
    return resolved


def load_function_config(path: str, function_dir: str | None = None, where: str = ""
                         ) -> LoadedConfig:
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'metadata' and 'spec', "
                          f"got {type(data).__name__}")
    if "spec" not in data:
        raise ConfigError(f"{path}: spec: is required but missing")
    config = validate_model(FunctionConfig, data, "")
    spec = config.spec
    if not spec.runtime.startswith("python"):
        raise ConfigError(f"spec.runtime: expected a python runtime such as 'python:3.11', "
                          f"got {spec.runtime!r}")
    if not spec.handler:
        if spec.workflow is None:
            raise ConfigError("spec.handler: is required but missing (or give spec.workflow)")
        directory = function_dir or os.path.dirname(os.path.abspath(path))
        return LoadedConfig(function=config, function_dir=directory,
                            triggers=_resolve_triggers(spec, where), source=path)
    try:
        module, _ = split_handler(spec.handler)
    except ValueError as exc:
        raise ConfigError(f"spec.handler: {exc}") from None
    if spec.build.functionSourceCode:
        directory = _materialise_inline_code(spec, module)
    else:
        directory = function_dir or os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ConfigError(f"--function-dir: {directory!r} is not a directory")
    return LoadedConfig(function=config, function_dir=directory,
                        triggers=_resolve_triggers(spec, where), source=path)


def load_platform_config(path: str | None) -> PlatformConfig:
    if path is None:
        return PlatformConfig()
    data = _read_yaml(path)
    if data is None:
        return PlatformConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    try:
        platform = PlatformConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation_error(exc)}") from None
    # Check listen addresses now, so the message names this file.
    parse_address(platform.healthCheck.listenAddress, f"{path}: healthCheck.listenAddress")
    for name, sink in (platform.metrics.sinks.items() if platform.metrics else ()):
        if sink.kind == "prometheusPull":
            parse_address(sink.url, f"{path}: metrics.sinks.{name}.url")
    door = platform.fusion.frontDoor.listenAddress
    if door:
        parse_address(door, f"{path}: fusion.frontDoor.listenAddress")
    return platform


def platform_addresses(platform: PlatformConfig, host: str) -> tuple[Address | None,
                                                                    Address | None]:
    """(health, metrics) listen addresses: the health check's unless disabled, and the
    first enabled prometheusPull sink's (Nuclio's default ``:8090`` when the platform
    config names no metrics at all). The processor binds them; ``processor kube render``
    declares them as container ports: one derivation for both."""
    health_cfg = platform.healthCheck
    health = (parse_address(health_cfg.listenAddress, "healthCheck.listenAddress", host)
              if health_cfg.enabled else None)
    if platform.metrics is None:
        return health, parse_address(MetricSink.model_fields["url"].default, "metrics", host)
    found = prometheus_pull_sink(platform)
    if found is None:
        return health, None
    name, sink = found
    return health, parse_address(sink.url, f"metrics.sinks.{name}.url", host)


def prometheus_pull_sink(platform: PlatformConfig) -> tuple[str, MetricSink] | None:
    """The first enabled prometheusPull sink (its name and config): where ``/metrics`` is
    served, and whose ``instanceName`` is Nuclio's ``instance`` label."""
    for name, sink in (platform.metrics.sinks.items() if platform.metrics else ()):
        if sink.kind == "prometheusPull" and sink.attributes.get("enabled", True):
            return name, sink
    return None
