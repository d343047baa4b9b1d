"""Maps a sink kind to the module that implements it (filled in as sinks land)."""

SINKS: dict[str, str] = {}
