"""The websocket trigger: per-connection events, stream and discrete interval modes."""
