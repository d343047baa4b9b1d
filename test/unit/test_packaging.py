"""Every top-level package ships: the wheel, the type check and the Docker image list them all.

A package added to the tree but forgotten in one of these lists works in a checkout and
fails only in the image or the wheel, where no other test looks.
"""

from __future__ import annotations

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.name for p in ROOT.iterdir()
                  if (p / "__init__.py").exists() and p.name != "test")


def test_pyproject_ships_and_checks_every_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(i.rstrip("*") for i in include) == PACKAGES
    checked = set(project["tool"]["mypy"]["packages"])
    assert set(PACKAGES) - {"protos"} <= checked, "mypy skips a package"


def test_the_image_copies_every_package() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", dockerfile, re.MULTILINE))
    assert copied == set(PACKAGES)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert {line[1:-1] for line in ignore if re.fullmatch(r"!\w+/", line)} == set(PACKAGES)
