"""The Envoy side of an extproc function: an envoy.yaml (in a ConfigMap) and, if asked,
an Envoy sidecar container in the processor's pod.

The ext_proc filter reaches the processor over loopback (same pod) on an HTTP/2
cluster, as the trigger needs (with ``transport: http``, Envoy's ``http_service``
on an HTTP/1.1 cluster, body modes NONE: that transport carries headers only).
From the trigger's config: ``processing_mode`` from
its ``type`` (the README's table), ``failure_mode_allow`` from ``failOpen`` (a
processor that lets traffic through when it has no worker wants Envoy to do the
same when it cannot reach it), and ``message_timeout`` = the worker availability
timeout + ``spec.eventTimeout`` (1 s without one), so that Envoy waits as long as
the processor may take to answer, including its own 408 or fail-open reply.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from core.config import ConfigError, parse_address
from processor.kube.plan import Plan, TriggerPlan
from processor.kube.ports import Port

CLUSTER = "nuclio-extproc"
_MODES = {
    "preprocessor": {"request_header_mode": "SEND", "request_body_mode": "BUFFERED",
                     "response_header_mode": "SKIP", "response_body_mode": "NONE"},
    "postprocessor": {"request_header_mode": "SEND", "request_body_mode": "NONE",
                      "response_header_mode": "SEND", "response_body_mode": "BUFFERED"},
    "wrapprocessor": {"request_header_mode": "SEND", "request_body_mode": "BUFFERED",
                      "response_header_mode": "SEND", "response_body_mode": "BUFFERED"},
    "observeprocessor": {"request_header_mode": "SEND", "request_body_mode": "STREAMED",
                         "response_header_mode": "SEND", "response_body_mode": "STREAMED"},
}


@dataclass(frozen=True)
class EnvoyOptions:
    mode: str = "snippet"  # none | snippet | sidecar
    image: str = "envoyproxy/envoy:v1.40-latest"
    port: int = 10000
    upstream: str = "127.0.0.1:8080"


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def _endpoint(host: str, port: int) -> dict[str, Any]:
    return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}


def _cluster(name: str, host: str, port: int, http2: bool = False) -> dict[str, Any]:
    try:
        ipaddress.ip_address(host)
        kind = "STATIC"
    except ValueError:
        kind = "STRICT_DNS"  # a Service name
    cluster: dict[str, Any] = {
        "name": name, "type": kind, "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name,
                            "endpoints": [{"lb_endpoints": [_endpoint(host, port)]}]}}
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                         "HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}}
        cluster["health_checks"] = [{
            "timeout": "1s", "interval": "5s", "unhealthy_threshold": 2,
            "healthy_threshold": 1,
            "grpc_health_check": {"service_name": "envoy.service.ext_proc.v3.ExternalProcessor"}}]
    return cluster


def ext_proc_filter(plan: Plan, trig: TriggerPlan) -> dict[str, Any]:
    attrs = trig.attributes
    timeout = trig.resolved.availability_timeout + (plan.loaded.function.spec.eventTimeout
                                                    or 1.0)
    config: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3."
                 "ExternalProcessor",
        "failure_mode_allow": bool(attrs.failOpen),
        "message_timeout": _duration(timeout),
        "processing_mode": _MODES[attrs.type],
    }
    if attrs.transport == "http":
        config["http_service"] = {"http_service": {"http_uri": {
            "uri": f"http://127.0.0.1:{attrs.port}/process", "cluster": CLUSTER,
            "timeout": "5s"}}}
        config["processing_mode"] = {**config["processing_mode"],
                                     "request_body_mode": "NONE", "response_body_mode": "NONE"}
    else:
        config["grpc_service"] = {"envoy_grpc": {"cluster_name": CLUSTER}, "timeout": "5s"}
    if attrs.type == "observeprocessor" and attrs.transport == "grpc":
        # Not over HTTP: Envoy 1.40 then leaves out messages (README, HTTP transport).
        config["observability_mode"] = True
    return {"name": "envoy.filters.http.ext_proc", "typed_config": config}


def envoy_config(plan: Plan, trig: TriggerPlan, options: EnvoyOptions) -> dict[str, Any]:
    upstream = parse_address(options.upstream, "--envoy-upstream")
    if upstream.port == 0:
        raise ConfigError("--envoy-upstream: expected HOST:PORT of the app behind Envoy")
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {"virtual_hosts": [{"name": "app", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "app"}}]}]},
        "http_filters": [ext_proc_filter(plan, trig), {
            "name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": "0.0.0.0",
                                               "port_value": options.port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": manager}]}]}],
            "clusters": [_cluster("app", upstream.host, upstream.port),
                         _cluster(CLUSTER, "127.0.0.1", trig.attributes.port,
                                  http2=trig.attributes.transport == "grpc")],
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}},
    }


def sidecar(options: EnvoyOptions, config_map: str, prestop: int) -> tuple[dict[str, Any],
                                                                         dict[str, Any], Port]:
    """(container, volume, the port that stands in for the extproc one in the Service)."""
    port = Port("envoy", options.port, "--envoy-port", app_protocol="http", trigger=None)
    container = {
        "name": "envoy", "image": options.image,
        "args": ["-c", "/etc/envoy/envoy.yaml", "--disable-hot-restart", "-l", "info"],
        "ports": [{"name": port.name, "containerPort": port.number, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": port.name}, "periodSeconds": 5},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "envoy", "mountPath": "/etc/envoy", "readOnly": True}],
        # Envoy stops first (shorter preStop), so no request reaches a draining processor.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(max(1, prestop - 2))]}}},
    }
    volume = {"name": "envoy", "configMap": {"name": config_map}}
    return container, volume, port
