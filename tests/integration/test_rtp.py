"""Our RTSP client and C receive loop (capture/rtp.py, rtsp/, _rtp.c) against
the real camera: the pictures they lead to are FFmpeg's, to the byte."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from streamgrid.capture import rtp
from streamgrid.capture.rtsp.errors import RtspAuthError, RtspError
from streamgrid.capture.source import SourceError, SourceFatalError, VideoSource

from ..support.camera import Camera, make_camera

FRAMES = 40


def test_the_rtp_receiver_is_built_here() -> None:
    """Without it every worker would quietly take FFmpeg's costlier path."""
    assert rtp.unavailable() is None


def test_auto_reads_an_h264_camera_with_it(camera: Camera) -> None:
    with VideoSource(camera.url()) as source:
        assert source.demux == "rtp"
        assert source.codec_name() == "h264"


@pytest.fixture(scope="module")
def clip_camera(work_dir: Path) -> Iterator[Camera]:
    """Plays small H.264 and H.265 files, each client from the start."""
    mounts = []
    for codec, encoder in (("h264", "libx264"), ("h265", "libx265")):
        path = work_dir / f"clip-{codec}.mkv"
        if not path.exists():
            subprocess.run(
                [
                    "ffmpeg",
                    "-nostdin",
                    "-loglevel",
                    "error",
                    "-y",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=320x240:rate=25",
                    "-t",
                    "3",
                    "-c:v",
                    encoder,
                    "-g",
                    "25",
                    "-bf",
                    "0",
                    "-pix_fmt",
                    "yuv420p",
                    str(path),
                ],
                check=True,
            )
        mounts += ["--file", f"/{codec}={path}"]
    cam = make_camera(work_dir, name="clip-camera", extra=mounts).start()
    yield cam
    cam.stop()


def luma_planes(frames: list[av.VideoFrame]) -> list[np.ndarray]:
    return [f.to_ndarray(format="gray") for f in frames]


def pictures_via_rtp(url: str, count: int) -> list[av.VideoFrame]:
    packets = rtp.RtpPackets(url, 5.0, 5.0)
    packets.open()
    try:
        decoder: Any = av.CodecContext.create(packets.codec_name, "r")
        decoder.extradata = packets.extradata or None
        frames: list[av.VideoFrame] = []
        while len(frames) < count:
            got = packets.read(False, 2.0)
            assert got is not None, "the camera went quiet"
            frames += decoder.decode(got.packet)
        return frames[:count]
    finally:
        packets.close()


def pictures_via_ffmpeg(url: str, count: int) -> list[av.VideoFrame]:
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=5.0) as container:
        frames: list[av.VideoFrame] = []
        for frame in container.decode(video=0):
            frames.append(frame)
            if len(frames) == count:
                break
        return frames


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_pictures_equal_ffmpegs(clip_camera: Camera, codec: str) -> None:
    url = clip_camera.url(f"/{codec}")
    ours, theirs = (
        luma_planes(pictures_via_rtp(url, FRAMES)),
        luma_planes(pictures_via_ffmpeg(url, FRAMES)),
    )
    assert len(ours) == len(theirs) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert len({a.tobytes() for a in ours}) > FRAMES // 2  # a moving picture, not one frame


def test_credentials_basic_and_refused(camera: Camera) -> None:
    with VideoSource(camera.secure_url(), demuxer="rtp") as source:
        assert source.demux == "rtp"
    packets = rtp.RtpPackets(camera.secure_url(password="wrong-pass"), 5.0, 5.0)
    with pytest.raises(RtspAuthError) as refused:
        packets.open()
    packets.close()
    assert refused.value.status == 401 and "wrong-pass" not in str(refused.value)
    with pytest.raises(SourceFatalError, match="401"):
        VideoSource(camera.secure_url(password="wrong-pass"), demuxer="rtp").__enter__()


def test_an_unknown_path_is_a_retryable_404(camera: Camera) -> None:
    packets = rtp.RtpPackets(camera.url("/no-such-mount"), 5.0, 5.0)
    with pytest.raises(RtspError) as missing:
        packets.open()
    packets.close()
    assert missing.value.status == 404
    with pytest.raises(SourceError, match="404") as raised:
        VideoSource(camera.url("/no-such-mount"), demuxer="rtp").__enter__()
    assert not isinstance(raised.value, SourceFatalError)


def test_the_open_deadline_holds_against_a_silent_server(black_hole: int) -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="timed out"):
        VideoSource(f"rtsp://127.0.0.1:{black_hole}/x", demuxer="rtp", open_timeout=1.0).__enter__()
    assert time.monotonic() - started < 2.0


def test_keepalives_keep_a_short_session_going(work_dir: Path) -> None:
    """The camera gives sessions 2 s: the client renews within that, the answers
    come back among the data and are skipped, and the pictures keep coming."""
    cam = make_camera(work_dir, name="short-session-camera", extra=["--session-timeout", "2"])
    cam.start()
    try:
        packets = rtp.RtpPackets(cam.url(), 5.0, 5.0)
        packets.open()
        assert packets.session.session_timeout == 2.0
        deadline, units, late = time.monotonic() + 5.0, 0, 0
        while time.monotonic() < deadline:
            if packets.read(False, 0.5) is not None:
                units += 1
                late += time.monotonic() > deadline - 1.0
        _handed, _, dropped, answers = packets.counts
        reader_status = packets.last_answer
        packets.close()
        assert answers >= 3 and reader_status == 200
        assert units >= 100 and late >= 10 and dropped == 0
    finally:
        cam.stop()


def test_interrupt_ends_a_blocked_handshake_at_once(black_hole: int) -> None:
    source = VideoSource(f"rtsp://127.0.0.1:{black_hole}/x", demuxer="rtp", open_timeout=20.0)
    threading.Timer(0.3, source.interrupt).start()
    started = time.monotonic()
    with pytest.raises(SourceError):
        source.__enter__()
    assert time.monotonic() - started < 2.0


def test_auto_passes_it_over_for_what_it_does_not_read(camera: Camera) -> None:
    """UDP is FFmpeg's to read; asked for by name, the rtp demuxer refuses."""
    with VideoSource(camera.url(), transport="udp") as source:
        assert source.demux == "native"
    with pytest.raises(SourceFatalError, match="rtp demuxer cannot read this camera"):
        VideoSource(camera.url(), transport="udp", demuxer="rtp").__enter__()


def test_digest_authentication_with_gstreamers_server(work_dir: Path) -> None:
    """What most IP cameras ask for; a wrong password is still a 401."""
    cam = make_camera(work_dir, name="digest-camera", extra=["--auth", "digest"]).start()
    try:
        packets = rtp.RtpPackets(cam.secure_url(), 5.0, 5.0)
        packets.open()
        try:
            assert packets.session.creds is not None
            assert packets.session.creds.scheme == "digest"
            assert packets.read(False, 2.0) is not None
        finally:
            packets.close()
        refused = rtp.RtpPackets(cam.secure_url(password="wrong-pass"), 5.0, 5.0)
        with pytest.raises(RtspAuthError):
            refused.open()
        refused.close()
    finally:
        cam.stop()
