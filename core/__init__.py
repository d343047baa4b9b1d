"""Shared types below triggers and sinks: config values and errors, function.yaml models, metrics
families, socket binding, the HTTP server helper, and the Sink interface."""
