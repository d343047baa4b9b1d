"""Media and stream helpers shared by triggers and sinks: JPEG/raw frames, RTP payload formats,
the MJPEG multipart parser, audio chunking, stream windows and the ordered frame pipeline."""
