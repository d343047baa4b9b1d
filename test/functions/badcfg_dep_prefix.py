"""Imports a missing dependency whose name is a prefix of this module's name.

``badcfg_dep`` is missing; the processor must report the missing dependency, not
claim that the handler module itself (``badcfg_dep_prefix``) cannot be found.
"""

import badcfg_dep  # noqa: F401  # a module that does not exist


def handler(context, event):
    return "never reached"
