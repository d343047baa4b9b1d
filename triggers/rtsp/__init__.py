"""The rtsp trigger: an RTSP client (source.py) feeding frames and audio to the pool."""
