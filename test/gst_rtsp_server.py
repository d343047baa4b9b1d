"""A GStreamer RTSP server serving a test source at /test (run with /usr/bin/python3).

Usage: gst_rtsp_server.py PORT KIND [WIDTH HEIGHT FPS PATTERN | RATE CHANNELS FREQ]
KIND: h264, h265, mjpeg or l16. Prints "ready" once listening; exits 3 when the port is
taken. The pipelines follow ../shared/PEERS.md (MJPEG needs format=I420).
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch(kind: str, args: list[str]) -> str:
    if kind == "l16":
        rate, channels, freq = (args + ["16000", "1", "440"][len(args):])[:3]
        return (f"( audiotestsrc is-live=true wave=sine freq={freq} volume=0.5 ! "
                f"audio/x-raw,format=S16BE,rate={rate},channels={channels} ! "
                "rtpL16pay name=pay0 pt=96 )")
    width, height, fps, pattern = (args + ["320", "240", "15", "ball"][len(args):])[:4]
    raw = (f"videotestsrc is-live=true pattern={pattern} ! "
           f"video/x-raw,width={width},height={height},framerate={fps}/1 ! videoconvert")
    if kind == "h264":
        return (f"( {raw} ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! "
                "rtph264pay name=pay0 pt=96 config-interval=1 )")
    if kind == "h265":
        return (f"( {raw} ! x265enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! "
                "rtph265pay name=pay0 pt=96 config-interval=1 )")
    if kind == "mjpeg":
        return f"( {raw} ! video/x-raw,format=I420 ! jpegenc ! rtpjpegpay name=pay0 pt=26 )"
    raise SystemExit(f"unknown kind {kind!r}")


def main() -> None:
    port, kind, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch(kind, rest))
    # Every client gets its own pipeline: with one shared media, a second client's
    # SETUP/PLAY racing the first one's can abort the server (seen in CI twice: in
    # gst_rtsp_media_get_rates with L16, and with two rtsp triggers on one MJPEG source).
    factory.set_shared(False)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        print(f"port {port} is taken", flush=True)
        raise SystemExit(3)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
