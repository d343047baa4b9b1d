"""Fails at import time: a dependency that is not installed (for test_bad_config)."""

import badcfg_missing_dependency  # noqa: F401  # a module that does not exist


def handler(context, event):
    return "never reached"
