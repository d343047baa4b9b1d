"""Every address the processor will listen on, derived as the processor derives it.

Health and metrics come from the platform config as ``Processor.bind`` reads it; each
trigger's address from the same parser, defaults and methods its ``bind`` uses (the
attribute models hold the defaults: http 8080, openinference 8080/9000, sinks 8081 /
8554, ...). Two addresses on one port are refused by the processor's own check
(``core.sockets.AddressBook``), so the message is the one the processor gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from core.config import Address, ConfigError, parse_address, validate_model
from core.function_config import PlatformConfig
from core.function_config import platform_addresses as shared_platform_addresses
from core.sink import SinkSpec
from core.sockets import AddressBook
from processor.kube.plan import Plan, TriggerPlan
from sinks.registry import sink_class

LISTEN_HOST = "0.0.0.0"  # the container's --listen-host
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class Port:
    name: str  # the container port's name (IANA_SVC_NAME: at most 15 characters)
    number: int
    yaml_path: str
    protocol: str = "TCP"
    app_protocol: str | None = None
    trigger: str | None = None  # None: health/metrics (scraped/probed on the pod, no Service)
    exposed: bool = True  # a loopback address is for a sidecar only


def platform_addresses(platform: PlatformConfig) -> tuple[Address | None, Address | None]:
    """(health, metrics) as ``Processor.bind`` chooses them (the same function)."""
    return shared_platform_addresses(platform, LISTEN_HOST)


def _port_name(base: str, suffix: str, used: set[str]) -> str:
    clean = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "port"
    if not re.search("[a-z]", clean):
        clean = f"p{clean}"
    for n in range(100):
        tail = f"-{suffix}" if suffix else ""
        tail += f"{n}" if n else ""
        name = (clean[:15 - len(tail)].rstrip("-") + tail).strip("-")
        if name not in used:
            used.add(name)
            return name
    raise ConfigError(f"cannot name the container port for {base!r}")  # pragma: no cover


def _trigger_host(trig: TriggerPlan) -> str:
    url = trig.resolved.url
    if not url:
        return LISTEN_HOST
    return parse_address(url, f"{trig.resolved.yaml_path}.url", LISTEN_HOST).host


_Found = list[tuple[str, Address, str, str | None]]


def _raw_ports(trig: TriggerPlan, warnings: list[str]) -> _Found:
    """(suffix, address, yaml path, appProtocol) for one trigger and its sink."""
    resolved, attrs, kind = trig.resolved, trig.attributes, trig.resolved.kind
    path = resolved.yaml_path
    found: _Found = []
    if kind == "http":  # HTTPTrigger.bind's own address
        found.append(("", trig.shell.listen_address(LISTEN_HOST), f"{path}.attributes.port",
                      "http"))
    elif kind == "websocket":
        address, source = trig.shell._listen_address(LISTEN_HOST)
        found.append(("", address, f"{path}.{source}", "kubernetes.io/ws"))
    elif kind == "openinference":  # the trigger binds REST and gRPC on the listen host
        if attrs.enable_rest:
            found.append(("rest", Address(LISTEN_HOST, attrs.rest_port),
                          f"{path}.attributes.rest_port", "http"))
        if attrs.enable_grpc:
            found.append(("grpc", Address(LISTEN_HOST, attrs.grpc_port),
                          f"{path}.attributes.grpc_port", "grpc"))
    elif kind == "extproc":
        found.append(("", Address(_trigger_host(trig), attrs.port), f"{path}.attributes.port",
                      "http" if attrs.transport == "http" else "grpc"))
    else:  # any other kind: what its listen_ports() declares (job, cron, mjpeg, rtsp: none)
        for n, port in enumerate(trig.shell.listen_ports()):
            found.append((str(n) if n else "", Address(_trigger_host(trig), port),
                          f"{path}.attributes", None))
    found.extend(_sink_ports(trig, warnings))
    return found


def _sink_ports(trig: TriggerPlan, warnings: list[str]) -> _Found:
    spec = getattr(trig.attributes, "sink", None)
    if not isinstance(spec, SinkSpec):
        return []
    sink_path = f"{trig.resolved.yaml_path}.attributes.sink"
    attrs: Any = validate_model(sink_class(spec.kind, sink_path).Attributes, spec.attributes,
                                f"{sink_path}.attributes")
    if spec.kind not in ("mjpeg", "rtsp"):
        return []  # websocket and webhook sinks connect out
    # As the sinks' bind: host from the attributes, else the listen host.
    address = parse_address(f"{attrs.host or LISTEN_HOST}:{attrs.port}",
                            f"spec.triggers.{trig.resolved.name}.attributes.sink.attributes.port",
                            LISTEN_HOST)
    if spec.kind == "rtsp" and attrs.udp_ports:
        warnings.append(f"{sink_path}.attributes.udp_ports: RTP over UDP goes to the pod's IP "
                        "on ports a Service does not forward; players outside the cluster "
                        "should use RTSP over TCP (the Service's port)")
    return [("sink", address, f"{sink_path}.attributes.port",
             "http" if spec.kind == "mjpeg" else "rtsp")]


def derive_ports(plan: Plan) -> list[Port]:
    """Container ports in the processor's bind order: health, metrics, then each trigger
    and its sink. Refuses what the processor refuses (a port named twice) and what a pod
    cannot declare (a port chosen by the OS)."""
    used: set[str] = set()
    ports: list[Port] = []
    health, metrics = platform_addresses(plan.platform)
    for what, address in (("healthCheck.listenAddress", health),
                          ("metrics.sinks.<prometheusPull>.url", metrics)):
        if address is not None and address.host in _LOOPBACK:
            plan.warnings.append(f"{what}: {address.host} is not reachable from outside the "
                                 "pod (kubelet probes, Prometheus): listen on ':PORT'")
    book = AddressBook()  # the processor's port check, on a book of this render's own
    if health is not None:
        book.claim(health, "platform config healthCheck.listenAddress")
        ports.append(Port(_port_name("health", "", used), health.port,
                          "healthCheck.listenAddress", app_protocol="http"))
    if metrics is not None and metrics != health:
        book.claim(metrics, "platform config metrics.sinks.<prometheusPull>.url")
        ports.append(Port(_port_name("metrics", "", used), metrics.port,
                          "metrics.sinks.<prometheusPull>.url", app_protocol="http"))
    for trig in plan.triggers:
        for suffix, address, yaml_path, app in _raw_ports(trig, plan.warnings):
            if address.port == 0:
                raise ConfigError(f"{yaml_path}: port 0 (chosen by the OS at start) cannot "
                                  "be declared to Kubernetes; expected a fixed port")
            book.claim(address, yaml_path)
            exposed = address.host not in _LOOPBACK
            if not exposed:
                plan.warnings.append(f"{yaml_path}: listens on {address.host}, so only "
                                     "containers in the pod reach it: no Service port")
            ports.append(Port(_port_name(trig.resolved.name, suffix, used), address.port,
                              yaml_path, app_protocol=app, trigger=trig.resolved.name,
                              exposed=exposed))
    return ports


def health_port(ports: list[Port]) -> Port | None:
    return next((p for p in ports if p.yaml_path == "healthCheck.listenAddress"), None)


def metrics_port(ports: list[Port], platform: PlatformConfig) -> tuple[int, str] | None:
    """(port, its name) where /metrics is served: its own listener, or the health one."""
    _, metrics = platform_addresses(platform)
    if metrics is None:
        return None
    for port in ports:
        if port.number == metrics.port and port.trigger is None:
            return port.number, port.name
    return None  # pragma: no cover - metrics is always in the list when configured
