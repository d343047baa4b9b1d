"""Several functions in one processor: configuration errors exit 2 before anything listens,
and name the file (and YAML path) they are about."""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml

from test.conftest import run_processor_once
from test.e2e.test_bad_config import MARKER_VAR, Run, assert_config_failure
from test.fusion_support import fn, fusion_platform, port_of, processor_args, write_functions
from test.support import free_port


def _run(configs: list[Path], platform: Path) -> Run:
    """Runs the processor to its exit, marked so that its listeners (if any) are known."""
    value = uuid.uuid4().hex
    result = run_processor_once(processor_args(configs, platform), env={MARKER_VAR: value})
    return Run(result, f"{MARKER_VAR}={value}")


def _ports(platform: Path, *configs: dict) -> list[int]:
    data = yaml.safe_load(platform.read_text())
    ports = [int(data["healthCheck"]["listenAddress"].rsplit(":", 1)[1]),
             int(data["metrics"]["sinks"]["prom"]["url"].rsplit(":", 1)[1])]
    door = data.get("fusion", {}).get("frontDoor", {}).get("listenAddress")
    if door:
        ports.append(int(door.rsplit(":", 1)[1]))
    return ports + [port_of(c) for c in configs]


def test_a_name_used_twice_names_both_files(tmp_path: Path) -> None:
    first, second = fn("same", "hello:handler"), fn("same", "hello:handler")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "function.yaml").write_text(yaml.safe_dump(first))
    (tmp_path / "two" / "function.yaml").write_text(yaml.safe_dump(second))
    platform = fusion_platform(tmp_path, front_door=free_port())
    run = _run([tmp_path / "one" / "function.yaml", tmp_path / "two" / "function.yaml"],
               platform)
    assert_config_failure(run, [str(tmp_path / "one" / "function.yaml"),
                                str(tmp_path / "two" / "function.yaml"), "'same'",
                                "metadata.name"], _ports(platform, first, second))


def test_a_port_clash_between_functions_names_both_yaml_paths(tmp_path: Path) -> None:
    port = free_port()
    alpha, beta = fn("alpha", "hello:handler", port=port), fn("beta", "hello:handler", port=port)
    write_functions(tmp_path / "fns", [alpha, beta])
    platform = fusion_platform(tmp_path, front_door=free_port())
    run = _run([tmp_path / "fns"], platform)
    message = assert_config_failure(run, [str(port), "already used by"],
                                    _ports(platform, alpha))
    assert f"{tmp_path / 'fns' / 'alpha' / 'function.yaml'}: spec.triggers.http" in message
    assert f"{tmp_path / 'fns' / 'beta' / 'function.yaml'}: spec.triggers.http" in message


def test_one_broken_handler_among_three_names_it_and_nothing_listens(tmp_path: Path) -> None:
    configs = [fn("fine-process", "hello:handler", kind="process"),
               fn("broken", "badcfg_import_error:handler", kind="process"),
               fn("fine-thread", "hello:handler", kind="thread")]
    write_functions(tmp_path / "fns", configs)
    platform = fusion_platform(tmp_path, front_door=free_port())
    run = _run([tmp_path / "fns"], platform)
    message = assert_config_failure(run, [str(tmp_path / "fns" / "broken" / "function.yaml"),
                                          "spec.handler"], _ports(platform, *configs))
    assert "fine-process" not in message and "fine-thread" not in message


def test_a_broken_handler_in_a_thread_function_is_named_too(tmp_path: Path) -> None:
    configs = [fn("fine", "hello:handler", kind="process"),
               fn("broken", "badcfg_import_error:handler", kind="thread")]
    write_functions(tmp_path / "fns", configs)
    platform = fusion_platform(tmp_path)
    run = _run([tmp_path / "fns"], platform)
    assert_config_failure(run, [str(tmp_path / "fns" / "broken" / "function.yaml"),
                                "spec.handler"], _ports(platform, *configs))


def test_a_function_with_neither_handler_nor_workflow_is_refused(tmp_path: Path) -> None:
    config = fn("empty", "hello:handler")
    del config["spec"]["handler"]
    other = fn("other", "hello:handler")
    write_functions(tmp_path / "fns", [config, other])
    platform = fusion_platform(tmp_path)
    run = _run([tmp_path / "fns"], platform)
    assert_config_failure(run, [str(tmp_path / "fns" / "empty" / "function.yaml"),
                                "spec.handler", "spec.workflow"], _ports(platform, config, other))


def test_a_workflow_without_handler_passes_the_loader(tmp_path: Path) -> None:
    """``spec.workflow`` instead of ``spec.handler`` is accepted by the config loader; an
    empty step list is then refused by the workflow's own check, naming its YAML path."""
    config = fn("flow", "hello:handler")
    del config["spec"]["handler"]
    config["spec"]["workflow"] = {"steps": []}
    write_functions(tmp_path / "fns", [config, fn("other", "hello:handler")])
    platform = fusion_platform(tmp_path)
    run = _run([tmp_path / "fns"], platform)
    message = assert_config_failure(run, [str(tmp_path / "fns" / "flow" / "function.yaml"),
                                          "spec.workflow"], _ports(platform, config))
    assert "spec.handler" not in message


def test_an_empty_config_directory_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    platform = fusion_platform(tmp_path)
    run = _run([tmp_path / "nothing"], platform)
    assert_config_failure(run, [str(tmp_path / "nothing"), "function.yaml"],
                          _ports(platform))
