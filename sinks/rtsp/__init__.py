"""The rtsp sink: an RTSP server (server.py) that plays the pipeline's output (sink.py)."""
