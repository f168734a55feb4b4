#!/usr/bin/python3
"""A tiny RTSP server for tests (tests/rtsp_reconnect_test.cc): serves a video file as
Motion-JPEG over RTP at rtsp://127.0.0.1:PORT/stream, scaled to WIDTHxHEIGHT at FPS.

usage: rtsp_test_server.py PORT VIDEO WIDTH HEIGHT FPS

Built on GStreamer's RTSP server library (Debian: gir1.2-gst-rtsp-server-1.0, python3-gi,
gstreamer1.0-plugins-good/base/libav). Prints "ready" once it listens; SIGTERM/SIGKILL end it.
Motion-JPEG: every frame is a key frame, so a client that reconnects decodes at once."""
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    port, video, width, height, fps = sys.argv[1:]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( filesrc location={video} ! decodebin ! videoconvert ! videoscale ! videorate"
        f" ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
        f" ! jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26 )")
    factory.set_shared(True)  # one pipeline however many clients
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_test_server: cannot listen on 127.0.0.1:{port}")
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
