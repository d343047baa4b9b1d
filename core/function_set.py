"""Loading one function.yaml or several (``--config`` repeated, or a directory).

With several, every error starts with the file it is about, and a function name used
twice is an error naming both files.
"""

from __future__ import annotations

import os

from core.config import ConfigError
from core.function_config import LoadedConfig, load_function_config


def config_files(paths: list[str]) -> list[str]:
    """``--config`` values as files: a directory stands for every ``*/function.yaml``
    right below it, sorted by folder name."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, entry, "function.yaml")
                           for entry in os.listdir(path)
                           if os.path.isfile(os.path.join(path, entry, "function.yaml")))
            if not found:
                raise ConfigError(f"{path}: no */function.yaml in this directory")
            files.extend(found)
        else:
            files.append(path)
    return files


def load_function_configs(paths: list[str], function_dir: str | None = None
                          ) -> list[LoadedConfig]:
    """One or several functions. With several, every error starts with the file it is
    about and a name used twice names both files; ``function_dir`` (``--function-dir``),
    when given, is where every function's handler is imported from."""
    files = config_files(paths)
    if len(files) == 1:
        return [load_function_config(files[0], function_dir)]
    loaded: list[LoadedConfig] = []
    seen: dict[str, str] = {}
    for file in files:
        try:
            config = load_function_config(file, function_dir, f"{file}: ")
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(message if message.startswith(file) else f"{file}: {message}"
                              ) from None
        name = config.function.metadata.name
        if name in seen:
            raise ConfigError(f"{file}: metadata.name: function {name!r} is already defined "
                              f"in {seen[name]}; names must be unique in a processor")
        seen[name] = file
        loaded.append(config)
    return loaded
