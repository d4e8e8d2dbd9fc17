"""A live RTSP test camera on GStreamer's RTSP server (Debian's gst-rtsp-server).

Runs under Debian's ``/usr/bin/python3`` (PyGObject comes from Debian, not from
the project's virtualenv), so it uses only the standard library and ``gi``.

Mounts (all H.264, live, shared between clients):

``/gray``   a flat gray picture whose level follows a schedule tied to the wall
            clock: level = LEVELS[floor(unix_time / PERIOD) % len(LEVELS)].
            Levels are full-range luma (0-255); the encoder gets the matching
            limited-range Y (16 + level * 219 / 255), so a decoder that maps Y back
            to full range reads the level back within rounding.
``/clock``  mid gray with the camera's wall clock (milliseconds since the epoch)
            drawn as a 48-bit barcode of black/white blocks across the top, so a
            test can tell how old a sampled frame is.
``/demo``   a brightness sweep with a moving bar: something to look at.
With ``--secure-port`` the same mounts are also served there behind RTSP basic
auth (``--user``/``--password``; Digest instead with ``--auth digest``), and
over TLS (rtsps://) with ``--tls-cert``/``--tls-key``.


The process prints ``READY <port> [<secure port>]`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer

CLOCK_BITS = 48
CLOCK_BLOCK = 16  # px per barcode bit: big enough to survive H.264 and JPEG


def full_to_limited(level: int) -> int:
    return 16 + round(max(0, min(255, level)) * 219 / 255)


class Pattern:
    """Makes I420 frames for one mount; ``frame(now)`` returns the bytes."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.chroma = bytes([128]) * (2 * (width // 2) * (height // 2))

    def flat(self, level: int) -> bytes:
        return bytes([full_to_limited(level)]) * (self.width * self.height) + self.chroma

    def frame(self, now: float) -> bytes:
        raise NotImplementedError


class GrayPattern(Pattern):
    def __init__(self, width: int, height: int, levels: list[int], period: float) -> None:
        super().__init__(width, height)
        self.levels, self.period = levels, period
        self.cache = {level: self.flat(level) for level in levels}

    def frame(self, now: float) -> bytes:
        return self.cache[self.levels[int(now // self.period) % len(self.levels)]]


class ClockPattern(Pattern):
    def frame(self, now: float) -> bytes:
        ms = int(now * 1000)
        white, black, gray = (bytes([full_to_limited(v)]) for v in (255, 0, 128))
        row = bytearray()
        for bit in range(CLOCK_BITS):  # most significant bit first
            on = (ms >> (CLOCK_BITS - 1 - bit)) & 1
            row += (white if on else black) * CLOCK_BLOCK
        row = bytes(row[: self.width]) + gray * max(0, self.width - len(row))
        bar = row * CLOCK_BLOCK
        rest = gray * (self.width * (self.height - CLOCK_BLOCK))
        return bar + rest + self.chroma


class DemoPattern(Pattern):
    def frame(self, now: float) -> bytes:
        level = int(127.5 + 127.5 * math.sin(now * 2 * math.pi / 20))  # 20 s sweep
        bar_w = max(8, self.width // 12)
        x = int((now * self.width / 4) % (self.width - bar_w))
        y = bytes([full_to_limited(level)])
        row = y * x + bytes([235]) * bar_w + y * (self.width - x - bar_w)
        return row * self.height + self.chroma


class PatternFactory(GstRtspServer.RTSPMediaFactory):  # type: ignore[misc]
    def __init__(self, pattern: Pattern, fps: int, gop: int, bitrate: int) -> None:
        super().__init__()
        self.pattern, self.fps = pattern, fps
        self.set_shared(True)
        caps = (
            f"video/x-raw,format=I420,width={pattern.width},height={pattern.height},"
            f"framerate={fps}/1"
        )
        self.set_launch(
            f"( appsrc name=src is-live=true format=time do-timestamp=true caps={caps} "
            f"! queue max-size-buffers=4 leaky=downstream "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} "
            f"bitrate={bitrate} ! video/x-h264,profile=baseline "
            f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )

    def do_configure(self, media: GstRtspServer.RTSPMedia) -> None:
        src = media.get_element().get_child_by_name("src")
        period_ms = max(1, int(1000 / self.fps))

        def push() -> bool:
            data = self.pattern.frame(time.time())
            ret = src.emit("push-buffer", Gst.Buffer.new_wrapped(data))
            return bool(ret in (Gst.FlowReturn.OK, Gst.FlowReturn.FLUSHING))

        push()
        source_id = GLib.timeout_add(period_ms, push)
        media.connect("unprepared", lambda *_: GLib.source_remove(source_id))


class FileFactory(GstRtspServer.RTSPMediaFactory):  # type: ignore[misc]
    """Plays an H.264/H.265 Matroska file in real time. Not shared: each client
    gets the file from its start (same content for every benchmark contender);
    shared: one pipeline fanned out to every client (concurrency runs)."""

    def __init__(self, path: str, shared: bool) -> None:
        super().__init__()
        codec = "h265" if ("h265" in path or "hevc" in path) else "h264"
        self.set_shared(shared)
        self.set_launch(
            f"( filesrc location={path} ! matroskademux ! {codec}parse "
            f"! rtp{codec}pay name=pay0 pt=96 config-interval=1 )"
        )


def make_server(
    host: str, port: int, patterns: dict[str, Pattern], args: argparse.Namespace, auth: bool = False
) -> GstRtspServer.RTSPServer:
    server = GstRtspServer.RTSPServer()
    server.set_address(host)
    server.set_service(str(port))
    mounts = server.get_mount_points()
    for path, pattern in patterns.items():
        factory = PatternFactory(pattern, args.fps, args.gop, args.bitrate)
        if auth:
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_role_from_structure(
                Gst.Structure.new_from_string(
                    "viewer, media.factory.access=(boolean)true, "
                    "media.factory.construct=(boolean)true"
                )
            )
            factory.set_permissions(permissions)
        mounts.add_factory(path, factory)
    for spec, shared in [(f, False) for f in args.file] + [(f, True) for f in args.shared_file]:
        mount, _, path = spec.partition("=")
        mounts.add_factory(mount, FileFactory(path, shared))
    if auth:
        rtsp_auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        if args.auth == "digest":
            rtsp_auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            rtsp_auth.add_digest(args.user, args.password, token)
        else:
            rtsp_auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        if args.tls_cert:
            # rtsps:// on this port: TLS first, then RTSP with auth inside it.
            rtsp_auth.set_tls_certificate(
                Gio.TlsCertificate.new_from_files(args.tls_cert, args.tls_key)
            )
        server.set_auth(rtsp_auth)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gop", type=int, default=25, help="keyframe interval, frames")
    parser.add_argument("--bitrate", type=int, default=500, help="kbit/s")
    parser.add_argument(
        "--levels",
        default="20,200,60,240,100,160,40,220,80,180,120,140",
        help="comma-separated full-range gray levels for /gray",
    )
    parser.add_argument("--period", type=float, default=0.5, help="seconds per level")
    parser.add_argument(
        "--secure-port", type=int, help="also serve every mount behind RTSP basic auth here"
    )
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="/MOUNT=PATH",
        help="serve a .mkv (H.264, or H.265 if its name says h265) in real time, per client",
    )
    parser.add_argument(
        "--shared-file",
        action="append",
        default=[],
        metavar="/MOUNT=PATH",
        help="like --file, one pipeline shared by every client",
    )
    parser.add_argument(
        "--session-timeout",
        type=int,
        help="seconds a session lives without a keep-alive (the server says so to clients)",
    )
    parser.add_argument(
        "--auth", choices=["basic", "digest"], default="basic", help="on --secure-port"
    )
    parser.add_argument("--tls-cert", help="PEM certificate: --secure-port speaks rtsps://")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--user", default="viewer")
    parser.add_argument("--password", default="s3cret-pass")
    args = parser.parse_args(argv)

    Gst.init(None)
    levels = [int(v) for v in args.levels.split(",") if v.strip()]
    w, h = args.width - args.width % 2, args.height - args.height % 2
    patterns: dict[str, Pattern] = {
        "/gray": GrayPattern(w, h, levels, args.period),
        "/clock": ClockPattern(max(w, CLOCK_BITS * CLOCK_BLOCK), h),
        "/demo": DemoPattern(w, h),
    }
    servers = [make_server(args.host, args.port, patterns, args)]
    if args.secure_port is not None:
        # A server of its own: with auth set, gst-rtsp-server answers 404 (not a
        # 401 challenge) to anonymous clients, so open mounts can't share it.
        servers.append(make_server(args.host, args.secure_port, patterns, args, auth=True))
    if args.session_timeout:
        timeout = args.session_timeout

        def on_client(_server: GstRtspServer.RTSPServer, client: GstRtspServer.RTSPClient) -> None:
            client.connect("new-session", lambda _c, session: session.set_timeout(timeout))

        for server in servers:
            server.connect("client-connected", on_client)
    ports = []
    for server in servers:
        if server.attach(None) == 0:
            print(f"cannot listen on {args.host}:{server.get_service()}", file=sys.stderr)
            return 1
        ports.append(str(server.get_bound_port()))
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, loop.quit)
    print("READY " + " ".join(ports), flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
