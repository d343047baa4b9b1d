"""Finding and importing a Nuclio handler (``module[.sub]:function``)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
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


def check_module_exists(spec: str, function_dir: str) -> None:
    """Fails early, without running the module, when its file is missing."""
    module, _ = split_handler(spec)
    add_function_dir(function_dir)
    top = module.split(".", 1)[0]
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError) as exc:
        raise HandlerLoadError(f"cannot look up handler module {top!r}: {exc}") from exc
    if found is None:
        raise HandlerLoadError(
            f"handler module {module!r} not found in {function_dir} "
            f"(expected {function_dir}/{module.replace('.', '/')}.py)")


def load_handler(spec: str, function_dir: str) -> LoadedHandler:
    module_name, function_name = split_handler(spec)
    add_function_dir(function_dir)
    try:
        module = importlib.import_module(module_name)
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
