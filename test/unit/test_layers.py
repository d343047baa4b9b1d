"""The house keeps one direction of imports.

Every import of every module in the project's packages is read with ``ast``
(``TYPE_CHECKING`` imports and imports inside functions included: a lazy
import that points upwards is still an upward dependency). A module may import
its own layer or any layer below it, never one above; the packages that share
a layer never import each other; and no set of modules imports itself round in
a circle.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Top to bottom. Packages named in one tuple share a layer and must not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("processor",),
    ("fusion",),
    ("triggers", "sinks"),
    ("invocations",),
    ("media",),
    ("core",),
    ("runtime",),
    ("protos",),
]

RANK = {package: rank for rank, names in enumerate(LAYERS) for package in names}
GENERATED = ("_pb2.py", "_pb2_grpc.py")


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, pathlib.Path]:
    modules = {}
    for package in RANK:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.name.endswith(GENERATED):
                modules[module_name(path)] = path
    return modules


MODULES = project_modules()


def resolve(name: str) -> str | None:
    """The project module an import names (``a.b.c`` may be module ``a.b`` with name ``c``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, imported project module) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = resolve(name)
            if target is not None and target != module:
                found.append((node.lineno, target))
    return found


GRAPH = {module: imports_of(module, path) for module, path in MODULES.items()}


def top(module: str) -> str:
    return module.split(".")[0]


def layer_violations() -> list[str]:
    problems = []
    for module, edges in GRAPH.items():
        here = top(module)
        for line, target in edges:
            there = top(target)
            if here == there:
                continue
            where = f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}"
            if RANK[there] < RANK[here]:
                problems.append(f"{where}: {there} is a higher layer than {here}")
            elif RANK[there] == RANK[here]:
                problems.append(f"{where}: {here} and {there} share a layer and must not "
                                f"import each other")
    return problems


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for _, target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    return found


def test_every_package_has_a_layer() -> None:
    on_disk = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "test"}
    assert on_disk <= set(RANK), f"packages missing from LAYERS: {sorted(on_disk - set(RANK))}"


def test_imports_point_down() -> None:
    problems = layer_violations()
    assert not problems, "upward or sideways imports:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    found = cycles()
    detail = []
    for component in found:
        edges = [f"  {MODULES[m].relative_to(ROOT)}:{line} imports {t}"
                 for m in component for line, t in GRAPH[m] if t in component]
        detail.append(" <-> ".join(component) + "\n" + "\n".join(edges))
    assert not found, "import cycles:\n" + "\n".join(detail)


@pytest.mark.parametrize("limit", [420])
def test_no_module_is_a_house_of_its_own(limit: int) -> None:
    """One idea per file: no hand-written module grows past ~400 lines."""
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path in MODULES.values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > limit]
    assert not long, "\n".join(long)
