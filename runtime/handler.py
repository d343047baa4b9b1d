"""Finding and importing a Nuclio handler (``module[.sub]:function``)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any


class HandlerLoadError(Exception):
    """The handler module or function cannot be found or imported."""


@dataclass(frozen=True)
class LoadedHandler:
    handler: Callable[..., Any]
    init_context: Callable[..., Any] | None
    is_async: bool
    init_is_async: bool


def split_handler(spec: str) -> tuple[str, str]:
    """``"pkg.mod:func"`` -> (``"pkg.mod"``, ``"func"``); raises ValueError when malformed."""
    module, sep, function = spec.partition(":")
    if not sep or not module.strip() or not function.strip() or ":" in function:
        raise ValueError(f"expected 'module:function' (e.g. 'main:handler'), got {spec!r}")
    return module.strip(), function.strip()


def add_function_dir(function_dir: str) -> None:
    if function_dir not in sys.path:
        sys.path.insert(0, function_dir)


def find_module_spec(module: str, function_dir: str) -> Any:
    """The spec of ``module`` as this function would import it, without running it: its
    own directory first (so another hosted function's module of the same name, already
    in ``sys.modules``, is not mistaken for it), then the rest of ``sys.path``."""
    path: list[str] | None = [function_dir]
    found: Any = None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        found = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), path)
        if found is None:
            break
        path = list(found.submodule_search_locations or [])
    if found is not None:
        return found
    add_function_dir(function_dir)
    return importlib.util.find_spec(module)


def check_module_exists(spec: str, function_dir: str) -> None:
    """Fails early, without running the module, when its file is missing."""
    module, _ = split_handler(spec)
    add_function_dir(function_dir)
    top = module.split(".", 1)[0]
    try:
        found = find_module_spec(top, function_dir)
    except (ImportError, ValueError) as exc:
        raise HandlerLoadError(f"cannot look up handler module {top!r}: {exc}") from exc
    if found is None:
        raise HandlerLoadError(
            f"handler module {module!r} not found in {function_dir} "
            f"(expected {function_dir}/{module.replace('.', '/')}.py)")


def _search_first(function_dir: str) -> None:
    """The function's directory at the front of ``sys.path`` for its import: another
    hosted function's directory, added later, must not win for a module name both use."""
    if sys.path[:1] != [function_dir]:
        if function_dir in sys.path:
            sys.path.remove(function_dir)
        sys.path.insert(0, function_dir)


def _provided_names(function_dir: str) -> set[str]:
    """Top-level module names the function's directory provides (``x.py``, ``pkg/``)."""
    names: set[str] = set()
    try:
        entries = list(os.scandir(function_dir))
    except OSError:
        return names
    for entry in entries:
        if entry.name.endswith(".py"):
            names.add(entry.name[:-3])
        elif entry.is_dir() and os.path.exists(os.path.join(entry.path, "__init__.py")):
            names.add(entry.name)
    return names


def _foreign_modules(function_dir: str) -> dict[str, ModuleType]:
    """Loaded modules that this function's directory would shadow, had it been imported
    alone: another hosted function's ``main`` (and its siblings) loaded from elsewhere."""
    folder = os.path.abspath(function_dir) + os.sep
    provided = _provided_names(function_dir)
    foreign = {}
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] in provided:
            origin = getattr(module, "__file__", None)
            if origin and not os.path.abspath(origin).startswith(folder):
                foreign[name] = module
    return foreign


def _import_own(module_name: str, function_dir: str) -> ModuleType:
    """Imports the handler module as this function would alone. Several functions
    hosted in one interpreter (thread and async workers) commonly all name their module
    ``main``: the modules another function loaded under this function's names are set
    aside for the import and put back after it, so each function runs its own code and
    the first one loaded keeps the plain names in ``sys.modules``."""
    _search_first(function_dir)
    foreign = _foreign_modules(function_dir)
    if not foreign:
        return importlib.import_module(module_name)
    for name in foreign:
        del sys.modules[name]
    tops = {name.partition(".")[0] for name in foreign} | {module_name.partition(".")[0]}
    try:
        return importlib.import_module(module_name)
    finally:
        for name in [n for n in sys.modules if n.partition(".")[0] in tops]:
            own = sys.modules.pop(name)
            sys.modules[f"{name}@{function_dir}"] = own  # kept alive, out of the way
        sys.modules.update(foreign)


def load_handler(spec: str, function_dir: str) -> LoadedHandler:
    module_name, function_name = split_handler(spec)
    try:
        module = _import_own(module_name, function_dir)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or (exc.name and module_name.startswith(exc.name + ".")):
            raise HandlerLoadError(
                f"handler module {module_name!r} not found in {function_dir}") from exc
        raise HandlerLoadError(
            f"importing handler module {module_name!r} failed: {_last_frame(exc)}") from exc
    except BaseException as exc:  # a module may raise anything, even SystemExit
        raise HandlerLoadError(
            f"importing handler module {module_name!r} failed: {_last_frame(exc)}") from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise HandlerLoadError(
            f"handler function {function_name!r} not found in module {module_name!r} "
            f"({getattr(module, '__file__', '?')})")
    if not callable(handler):
        raise HandlerLoadError(f"{spec!r} is not callable")
    init = getattr(module, "init_context", None)
    if init is not None and not callable(init):
        init = None
    return LoadedHandler(
        handler=handler,
        init_context=init,
        is_async=inspect.iscoroutinefunction(handler),
        init_is_async=init is not None and inspect.iscoroutinefunction(init),
    )


def _last_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
