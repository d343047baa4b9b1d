"""The host process: configuration, start-up and shutdown, health and metrics."""
