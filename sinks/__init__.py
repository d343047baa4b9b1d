"""Sinks: where a trigger's responses go when they do not go back to a caller.

One module per sink kind, listed in ``sinks.registry``.
"""
