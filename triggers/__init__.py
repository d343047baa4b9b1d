"""Triggers: one module per kind, each listed in ``triggers.registry``."""
