"""Broken configurations, run through the real ``processor`` CLI.

Every broken config must give exit status 2 and exactly one error line that
names the YAML path (or the file) and what was expected, before anything
listens: no "listening" log line, and after the process exits every
configured loopback port (trigger, health, metrics) refuses a fresh connect.

A few things that look odd but are valid must *not* fail: an unknown trigger
attribute (a warning with a did-you-mean hint) and the output of
``nuctl export`` (deployer-only keys, inline base64 source code).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from test.conftest import FUNCTIONS, function_config, run_processor_once
from test.support import free_port, platform_config

EXIT_CONFIG = 2
MARKER_VAR = "BADCFG_TEST_RUN"


# -- helpers -----------------------------------------------------------------------------
@dataclass
class Platform:
    path: Path
    health_port: int
    metrics_port: int

    @property
    def ports(self) -> list[int]:
        return [self.health_port, self.metrics_port]


def write_platform(directory: Path, *, listen_address: str | None = None) -> Platform:
    """A platform.yaml whose health and metrics endpoints use free loopback ports."""
    health_port, metrics_port = free_port(), free_port()
    platform = platform_config(health_port, metrics_port, health_address=listen_address)
    path = directory / "platform.yaml"
    path.write_text(yaml.safe_dump(platform))
    return Platform(path, health_port, metrics_port)


def write_config(directory: Path, config: dict[str, Any] | str) -> Path:
    path = directory / "function.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


@dataclass
class Run:
    result: subprocess.CompletedProcess[str]
    # In the environment of the processor and its workers: tells our listeners from
    # those of other processes on this (shared) machine.
    marker: str


def run_cli(config_path: Path, platform: Platform, function_dir: Path | None = FUNCTIONS,
            ) -> Run:
    args = ["--config", str(config_path), "--platform-config", str(platform.path)]
    if function_dir is not None:
        args += ["--function-dir", str(function_dir)]
    marker = f"{MARKER_VAR}={uuid.uuid4().hex}"
    name, _, value = marker.partition("=")
    os.environ[name] = value  # run_processor_once passes a copy of os.environ
    try:
        return Run(run_processor_once(args), marker)
    finally:
        del os.environ[name]


def error_lines(output: str) -> list[str]:
    """Messages of the error-level log lines (the processor logs JSON by default)."""
    found = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") == "error":
            found.append(str(record.get("message", "")))
    return found


def listeners(port: int) -> dict[int, bytes]:
    """pid -> environment of each process with a listening TCP socket on ``port`` (Linux)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    owners: dict[int, bytes] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                owners[int(pid)] = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
    return owners


def _refused(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        # A TCP simultaneous open with itself is not a listener.
        return sock.getsockname() == sock.getpeername()


def assert_refused(port: int, marker: str) -> None:
    """Nothing of ours is listening on 127.0.0.1:port.

    The machine is shared and ``free_port()`` can only pick a port that was free a
    moment ago: a listener that belongs to some other process makes the check
    inconclusive (a warning), never a failure.
    """
    if _refused(port):
        return
    owners = listeners(port)
    if not owners and _refused(port):  # whoever it was has gone already
        return
    ours = [pid for pid, environ in owners.items() if marker.encode() in environ.split(b"\0")]
    if owners and not ours:
        warnings.warn(f"127.0.0.1:{port} was taken by another process {sorted(owners)}; "
                      "cannot check that the processor left it alone", stacklevel=2)
        return
    raise AssertionError(f"something accepted a connection on 127.0.0.1:{port} "
                         f"(processes of this test listening there: {ours or 'unknown'})")


def assert_config_failure(run: Run, expected: list[str], ports: list[int]) -> str:
    """Exit 2, one error line holding every expected substring, nothing listened."""
    result = run.result
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_CONFIG, (
        f"expected exit status {EXIT_CONFIG}, got {result.returncode}:\n{output}")
    assert "Traceback" not in output, f"a traceback instead of one clear error line:\n{output}"
    errors = error_lines(output)
    assert len(errors) == 1, f"expected exactly one error line, got {len(errors)}:\n{output}"
    message = errors[0]
    for text in expected:
        assert text in message, f"{text!r} missing from the error line: {message!r}"
    assert "listening" not in output.lower(), f"something started listening:\n{output}"
    for port in ports:
        assert_refused(port, run.marker)
    return message


# -- configs that are broken in the function.yaml ----------------------------------------
def fn(port: int, *, handler: str = "hello:handler", trigger: dict[str, Any] | None = None,
       attributes: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """A valid function.yaml with one http trigger ``web`` on 127.0.0.1:port, then tweaked."""
    web: dict[str, Any] = {"kind": "http", "numWorkers": 1, "url": f"127.0.0.1:{port}"}
    web.update(trigger or {})
    if attributes is not None:
        web["attributes"] = attributes
    body: dict[str, Any] = {"runtime": "python:3.11", "handler": handler,
                            "triggers": {"web": web}}
    body.update(spec)
    return {"apiVersion": "nuclio.io/v1", "kind": "NuclioFunction",
            "metadata": {"name": "bad-config", "namespace": "default"}, "spec": body}


def without(config: dict[str, Any], *path: str) -> dict[str, Any]:
    target = config
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return config


@dataclass
class Case:
    id: str
    config: Callable[[int], dict[str, Any] | str]
    # Substrings of the error line; "{config}" and "{port}" are filled in.
    expected: list[str]
    function_dir: Path | None = FUNCTIONS
    marks: list[Any] = field(default_factory=list)


CASES = [
    Case("top-level-is-a-list",
         lambda port: "- apiVersion: nuclio.io/v1\n- spec:\n    handler: hello:handler\n",
         ["{config}", "expected a mapping", "list"]),
    Case("missing-spec",
         lambda port: {"apiVersion": "nuclio.io/v1", "kind": "NuclioFunction",
                       "metadata": {"name": "no-spec"}},
         ["{config}", "spec", "required"]),
    Case("spec-not-a-mapping",
         lambda port: {"apiVersion": "nuclio.io/v1", "spec": "hello:handler"},
         ["spec", "dictionary"]),
    Case("missing-handler",
         lambda port: without(fn(port), "spec", "handler"),
         ["spec.handler", "required"]),
    Case("handler-without-colon",
         lambda port: fn(port, handler="hello.handler"),
         ["spec.handler", "module:function", "'hello.handler'"]),
    Case("handler-without-function",
         lambda port: fn(port, handler="hello:"),
         ["spec.handler", "module:function"]),
    Case("runtime-not-python",
         lambda port: fn(port, runtime="golang"),
         ["spec.runtime", "python", "golang"]),
    Case("wrong-api-version",
         lambda port: {**fn(port), "apiVersion": "nuclio.io/v2"},
         ["apiVersion", "nuclio.io/v1", "nuclio.io/v2"]),
    Case("wrong-kind",
         lambda port: {**fn(port), "kind": "Deployment"},
         ["kind", "NuclioFunction", "Deployment"]),
    Case("num-workers-not-an-integer",
         lambda port: fn(port, trigger={"numWorkers": "many"}),
         ["spec.triggers.web.numWorkers", "integer", "many"]),
    Case("num-workers-zero",
         lambda port: fn(port, trigger={"numWorkers": 0}),
         ["spec.triggers.web.numWorkers", "greater than or equal to 1"]),
    Case("negative-availability-timeout",
         lambda port: fn(port, trigger={"workerAvailabilityTimeoutMilliseconds": -5}),
         ["spec.triggers.web.workerAvailabilityTimeoutMilliseconds",
          "greater than or equal to 0", "-5"]),
    Case("events-per-worker-zero",
         lambda port: fn(port, runtimeAttributes={"eventsPerWorker": 0}),
         ["spec.runtimeAttributes.eventsPerWorker", "greater than or equal to 1"]),
    Case("unknown-trigger-kind",
         lambda port: fn(port, trigger={"kind": "kafkaa"}),
         ["spec.triggers.web.kind", "'kafkaa'", "expected one of", "http"]),
    Case("triggers-not-a-mapping",
         lambda port: fn(port, triggers=[{"kind": "http"}]),
         ["spec.triggers", "dictionary"]),
    Case("trigger-without-kind",
         lambda port: without(fn(port), "spec", "triggers", "web", "kind"),
         ["spec.triggers.web.kind", "required"]),
    Case("port-not-an-integer",
         lambda port: fn(port, attributes={"port": "abc"}),
         ["spec.triggers.web.attributes.port", "integer", "abc"]),
    Case("port-out-of-range",
         lambda port: fn(port, attributes={"port": 70000}),
         ["spec.triggers.web.attributes.port", "65535"]),
    Case("bad-trigger-url",
         lambda port: fn(port, trigger={"url": "nowhere"}),
         ["spec.triggers.web.url", "listen address", "nowhere"]),
    Case("bad-event-timeout",
         lambda port: fn(port, eventTimeout="soon"),
         ["spec.eventTimeout", "duration", "soon"]),
    Case("env-not-a-list",
         lambda port: fn(port, env={"GREETING": "hi"}),
         ["spec.env", "list"]),
    Case("unknown-worker-kind",
         lambda port: fn(port, runtimeAttributes={"workerKind": "fibers"}),
         ["spec.runtimeAttributes.workerKind", "fibers", "async"]),
    Case("async-worker-kind-with-sync-handler",
         lambda port: fn(port, handler="badcfg_sync:handler",
                         runtimeAttributes={"workerKind": "async"}),
         ["spec.runtimeAttributes.workerKind", "async", "badcfg_sync:handler"]),
    Case("bad-base64-source",
         lambda port: fn(port, handler="main:handler",
                         build={"functionSourceCode": "this is not base64!",
                                "codeEntryType": "sourceCode"}),
         ["spec.build.functionSourceCode", "base64"], function_dir=None),
    Case("handler-module-missing",
         lambda port: fn(port, handler="badcfg_no_such_module:handler"),
         ["spec.handler", "'badcfg_no_such_module'", "not found"]),
    Case("handler-function-missing",
         lambda port: fn(port, handler="badcfg_no_handler:handler"),
         ["spec.handler", "'handler'", "not found", "badcfg_no_handler"]),
    Case("handler-function-missing-thread-worker",
         lambda port: fn(port, handler="badcfg_no_handler:handler",
                         runtimeAttributes={"workerKind": "thread"}),
         ["spec.handler", "'handler'", "not found", "badcfg_no_handler"]),
    Case("handler-module-raises-import-error",
         lambda port: fn(port, handler="badcfg_import_error:handler"),
         ["spec.handler", "'badcfg_import_error'", "ModuleNotFoundError",
          "badcfg_missing_dependency"]),
    Case("handler-module-raises-import-error-thread-worker",
         lambda port: fn(port, handler="badcfg_import_error:handler",
                         runtimeAttributes={"workerKind": "thread"}),
         ["spec.handler", "'badcfg_import_error'", "ModuleNotFoundError",
          "badcfg_missing_dependency"]),
    # The missing dependency ('badcfg_dep') is a prefix of the module's own name: the
    # message must still blame the dependency, not claim the handler module is missing.
    Case("handler-dependency-name-prefixes-module-name",
         lambda port: fn(port, handler="badcfg_dep_prefix:handler"),
         ["spec.handler", "'badcfg_dep_prefix'", "ModuleNotFoundError", "'badcfg_dep'"]),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_broken_function_config_fails_before_listening(case: Case, tmp_path: Path) -> None:
    port = free_port()
    platform = write_platform(tmp_path)
    config_path = write_config(tmp_path, case.config(port))
    result = run_cli(config_path, platform, case.function_dir)
    expected = [e.format(config=config_path, port=port) for e in case.expected]
    assert_config_failure(result, expected, [port, *platform.ports])


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    port = free_port()
    platform = write_platform(tmp_path)
    config_path = write_config(tmp_path, (
        "apiVersion: nuclio.io/v1\n"
        "kind: NuclioFunction\n"
        "spec:\n"
        "  handler: hello:handler\n"
        "   runtime: python:3.11\n"  # line 5: indented one space too far
        "  triggers:\n"
        f"    web: {{kind: http, url: '127.0.0.1:{port}'}}\n"))
    message = assert_config_failure(run_cli(config_path, platform),
                                     [str(config_path), "invalid YAML", "line 5"],
                                     [port, *platform.ports])
    assert "mapping values are not allowed" in message


def test_empty_config_file(tmp_path: Path) -> None:
    platform = write_platform(tmp_path)
    config_path = write_config(tmp_path, "# nothing here\n")
    assert_config_failure(run_cli(config_path, platform),
                          [str(config_path), "expected a mapping"], platform.ports)


def test_config_file_does_not_exist(tmp_path: Path) -> None:
    platform = write_platform(tmp_path)
    missing = tmp_path / "nowhere" / "function.yaml"
    assert_config_failure(run_cli(missing, platform), [str(missing), "not found"],
                          platform.ports)


def test_function_dir_does_not_exist(tmp_path: Path) -> None:
    port = free_port()
    platform = write_platform(tmp_path)
    config_path = write_config(tmp_path, fn(port))
    missing = tmp_path / "no-such-dir"
    assert_config_failure(run_cli(config_path, platform, missing),
                          ["--function-dir", str(missing), "not a directory"],
                          [port, *platform.ports])


def test_handler_module_with_syntax_error(tmp_path: Path) -> None:
    # Written here rather than kept in test/functions/ so `ruff check .` stays clean.
    function_dir = tmp_path / "functions"
    function_dir.mkdir()
    (function_dir / "badcfg_syntax_error.py").write_text(
        "def handler(context, event)\n"  # line 1: missing colon
        "    return 'never'\n")
    port = free_port()
    platform = write_platform(tmp_path)
    config_path = write_config(tmp_path, fn(port, handler="badcfg_syntax_error:handler"))
    assert_config_failure(run_cli(config_path, platform, function_dir),
                          ["spec.handler", "'badcfg_syntax_error'", "SyntaxError",
                           "line 1"],
                          [port, *platform.ports])


def test_trigger_port_already_in_use(tmp_path: Path) -> None:
    platform = write_platform(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config_path = write_config(tmp_path, fn(port))
        message = assert_config_failure(run_cli(config_path, platform),
                                        ["spec.triggers.web", str(port), "already in use"],
                                        platform.ports)
        assert "127.0.0.1" in message
        # The port is still ours: the processor did not take it over.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


def test_two_triggers_on_the_same_port(tmp_path: Path) -> None:
    port = free_port()
    platform = write_platform(tmp_path)
    config = fn(port)
    web = config["spec"]["triggers"].pop("web")
    config["spec"]["triggers"] = {"a-first": web,
                                  "b-second": {"kind": "http", "url": f"127.0.0.1:{port}"}}
    config_path = write_config(tmp_path, config)
    assert_config_failure(run_cli(config_path, platform),
                          ["spec.triggers.b-second", str(port), "already"],
                          [port, *platform.ports])


def test_trigger_on_the_health_port(tmp_path: Path) -> None:
    platform = write_platform(tmp_path)
    config_path = write_config(tmp_path, fn(platform.health_port))
    assert_config_failure(run_cli(config_path, platform),
                          ["spec.triggers.web", str(platform.health_port), "already"],
                          platform.ports)


def test_health_port_already_in_use(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        platform = write_platform(tmp_path, listen_address=f"127.0.0.1:{taken}")
        port = free_port()
        config_path = write_config(tmp_path, fn(port))
        assert_config_failure(run_cli(config_path, platform),
                              ["healthCheck.listenAddress", str(taken), "already in use"],
                              [port, platform.metrics_port])


def test_invalid_platform_listen_address(tmp_path: Path) -> None:
    port = free_port()
    platform = write_platform(tmp_path, listen_address="nonsense")
    config_path = write_config(tmp_path, fn(port))
    assert_config_failure(run_cli(config_path, platform),
                          ["healthCheck.listenAddress", "listen address", "'nonsense'"],
                          [port, platform.metrics_port])


def test_invalid_platform_logger_level(tmp_path: Path) -> None:
    port = free_port()
    platform = write_platform(tmp_path)
    data = yaml.safe_load(platform.path.read_text())
    data["logger"]["system"][0]["level"] = "loud"
    platform.path.write_text(yaml.safe_dump(data))
    config_path = write_config(tmp_path, fn(port))
    assert_config_failure(run_cli(config_path, platform),
                          [str(platform.path), "logger.system[0].level", "loud"],
                          [port, *platform.ports])


def test_platform_config_does_not_exist(tmp_path: Path) -> None:
    port = free_port()
    platform = write_platform(tmp_path)
    platform.path.unlink()
    config_path = write_config(tmp_path, fn(port))
    assert_config_failure(run_cli(config_path, platform), [str(platform.path), "not found"],
                          [port, *platform.ports])


# -- things that look odd but must work -------------------------------------------------
def test_unknown_trigger_attribute_is_a_warning_with_a_hint(start_processor) -> None:
    port = free_port()
    proc = start_processor(function_config(
        "hello:handler", port=port, http_extra={"attributes": {"maxRequestBodySizee": 10}}))
    response = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert response.status_code == 200
    assert response.text == "hello"
    warnings = [line for line in proc.logs.splitlines() if "maxRequestBodySizee" in line]
    assert len(warnings) == 1, proc.logs
    record = json.loads(warnings[0])
    assert record["level"] == "warn"
    assert "spec.triggers.http.attributes" in record["message"]
    assert "did you mean 'maxRequestBodySize'" in record["message"]
    # The misspelt key did not silently become the limit: a 100-byte body is accepted.
    assert requests.post(f"http://127.0.0.1:{port}/", data=b"x" * 100,
                         timeout=5).status_code == 200
    assert proc.stop() == 0


INLINE_SOURCE = '''\
import os

import nuclio_sdk


def init_context(context):
    context.user_data.prefix = "inline"


def handler(context, event):
    return context.Response(
        body={"from": context.user_data.prefix, "env": os.environ.get("EXPORTED_VAR"),
              "name": os.environ.get("NUCLIO_FUNCTION_NAME")},
        headers={}, content_type="application/json", status_code=200)


_ = nuclio_sdk.Response
'''


def nuctl_export(port: int) -> dict[str, Any]:
    """What ``nuctl export function exported-fn`` prints, with the trigger on loopback."""
    return {
        "apiVersion": "nuclio.io/v1",
        "kind": "NuclioFunction",
        "metadata": {
            "name": "exported-fn",
            "namespace": "nuclio",
            "labels": {"nuclio.io/project-name": "default", "app": "demo"},
            "annotations": {"nuclio.io/generated_by": "nuctl", "owner": "team-a"},
        },
        "spec": {
            "description": "exported by nuctl",
            "handler": "main:handler",
            "runtime": "python:3.11",
            "image": "registry.example.com/nuclio/processor-exported-fn:latest",
            "imageHash": "1700000000000000000",
            "env": [{"name": "EXPORTED_VAR", "value": "from-export"}],
            "resources": {"requests": {"cpu": "25m", "memory": "1Mi"},
                          "limits": {"cpu": "1", "memory": "512Mi"}},
            "minReplicas": 1,
            "maxReplicas": 3,
            "targetCPU": 75,
            "readinessTimeoutSeconds": 120,
            "platform": {"attributes": {"restartPolicy": {"name": "always"}}},
            "securityContext": {},
            "loggerSinks": [{"level": "debug"}],
            "eventTimeout": "30s",
            "build": {
                "functionSourceCode": base64.b64encode(INLINE_SOURCE.encode()).decode(),
                "codeEntryType": "sourceCode",
                "commands": ["pip install requests"],
                "noBaseImagesPull": True,
                "registry": "registry.example.com",
                "timestamp": 1700000000,
            },
            "triggers": {
                "default-http": {
                    "class": "",
                    "kind": "http",
                    "name": "default-http",
                    "maxWorkers": 2,
                    "url": f"127.0.0.1:{port}",
                    "workerAvailabilityTimeoutMilliseconds": 10000,
                    "attributes": {"serviceType": "ClusterIP", "ingresses": {}},
                },
            },
            "version": -1,
            "alias": "latest",
        },
    }


def test_nuctl_export_loads_and_serves_inline_code(start_processor) -> None:
    port = free_port()
    proc = start_processor(nuctl_export(port), function_dir=None)
    response = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"from": "inline", "env": "from-export", "name": "exported-fn"}
    assert "error" not in [json.loads(line).get("level") for line in proc.logs.splitlines()
                           if line.startswith("{")]
    assert proc.stop() == 0
