#!/usr/bin/python3
"""Looping RTSP test camera for tests/rtsp.rs and bench/camera-restarts.sh, on GStreamer
gst-rtsp-server (python3-gi). Binds 127.0.0.1 only.

Usage: /usr/bin/python3 tests/rtsp_camera.py PORT FIXTURES_DIR [--auth]
  --auth: every mount needs basic auth, user "user", password "pass" (others get 401)

Mounts (one live-paced pipeline per client):
  /cam     H.264 baseline + AAC   (h264-baseline-aac.mp4)
  /camhigh H.264 high + AAC       (h264-high-aac.mp4)
  /video   H.264 only             (h264-baseline-noaudio.mp4)
  /pcma    H.264 + G.711 A-law    (h264-pcma.mov)
Looping: a non-flushing SEGMENT seek on SEGMENT_DONE keeps RTP timestamps continuous.
Prints "client connected ip=..." and "client closed" lines (flushed) so tests can see when the
server connects and leaves.
"""
import os
import sys

import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

Gst.init(None)
SEEK_FLAGS = Gst.SeekFlags.SEGMENT


class LoopMedia(GstRtspServer.RTSPMedia):
    def do_handle_message(self, message):
        if message.type == Gst.MessageType.SEGMENT_DONE:
            demux = self.get_element().get_by_name("d")
            if demux is not None:
                demux.seek_simple(Gst.Format.TIME, SEEK_FLAGS, 0)
            return True
        return GstRtspServer.RTSPMedia.do_handle_message(self, message)


class LoopFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, launch):
        super().__init__()
        self.set_launch(launch)
        # Not shared: each client gets its own pipeline. Shared media crashed gst-rtsp-server
        # (gst_rtsp_media_get_rates assertion) with TCP and UDP clients joining at once.
        self.set_shared(False)
        self.set_media_gtype(LoopMedia)
        self.set_protocols(GstRtsp.RTSPLowerTrans.UDP | GstRtsp.RTSPLowerTrans.TCP)
        self.connect("media-configure", self.on_configure)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_role_from_structure(Gst.Structure.new_from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
        self.set_permissions(perms)

    @staticmethod
    def on_configure(_factory, media):
        media.connect("prepared", LoopFactory.on_prepared)

    @staticmethod
    def on_prepared(media):
        demux = media.get_element().get_by_name("d")
        demux.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | SEEK_FLAGS, 0)


def av(path):
    return (f"( filesrc location={path} ! qtdemux name=d "
            f"d.video_0 ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 "
            f"d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )")


def pcma(path):
    return (f"( filesrc location={path} ! qtdemux name=d "
            f"d.video_0 ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 "
            f"d.audio_0 ! queue ! rtppcmapay name=pay1 pt=8 )")


def vonly(path):
    return (f"( filesrc location={path} ! qtdemux name=d "
            f"d.video_0 ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )")


def on_client(_server, client):
    conn = client.get_connection()
    ip = conn.get_ip() if conn is not None else "?"
    print(f"client connected ip={ip}", flush=True)
    client.connect("closed", lambda _c: print("client closed", flush=True))


def main():
    args = [a for a in sys.argv[1:] if a != "--auth"]
    secure = "--auth" in sys.argv[1:]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    port, fix = args
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    mounts = server.get_mount_points()
    mounts.add_factory("/cam", LoopFactory(av(os.path.join(fix, "h264-baseline-aac.mp4"))))
    mounts.add_factory("/camhigh", LoopFactory(av(os.path.join(fix, "h264-high-aac.mp4"))))
    mounts.add_factory("/video", LoopFactory(vonly(os.path.join(fix, "h264-baseline-noaudio.mp4"))))
    mounts.add_factory("/pcma", LoopFactory(pcma(os.path.join(fix, "h264-pcma.mov"))))
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic("user", "pass"), token)
    if not secure:
        # Clients without credentials get this token, which every mount accepts.
        auth.set_default_token(token)
    server.set_auth(auth)
    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        print(f"failed to bind 127.0.0.1:{port}", file=sys.stderr)
        sys.exit(1)
    print(f"rtsp camera ready port={port} pid={os.getpid()}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
