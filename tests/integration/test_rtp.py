"""Our RTSP client and C receive loop (capture/rtp.py, rtsp/, _rtp.c) against
the real camera: the pictures they lead to are FFmpeg's, to the byte."""

from __future__ import annotations

import os
import signal
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
from streamgrid.capture.settings import Demuxer
from streamgrid.capture.source import SourceError, SourceFatalError, VideoSource
from streamgrid.core.crd import WorkerExit
from testbed.camera import Camera, make_camera
from testbed.worker import capture_settings, dir_store, start_worker

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
        assert source.demux == "pyav"
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


@pytest.mark.parametrize("demuxer", ["rtp", "pyav"])
def test_the_source_reports_its_demuxer(camera: Camera, demuxer: Demuxer) -> None:
    with VideoSource(camera.url(), demuxer=demuxer) as source:
        assert source.demux == demuxer
        assert source.codec_name() == "h264"


@pytest.mark.parametrize("demuxer", ["rtp"])
def test_a_keyframe_worker_skips_most_packets_in_c(
    camera: Camera, tmp_path: Path, demuxer: Demuxer
) -> None:
    """Interval 2 s over a 1 s GOP: keyframe mode, one packet in 25 reaches Python."""
    settings = capture_settings(camera.url(), capture_interval=2.0, demuxer=demuxer)
    run = start_worker(settings, dir_store(tmp_path))
    # The first samples are lazy (every packet) while the GOP is measured.
    run.wait_for(lambda p: p.frames_captured >= 3, 20, "3 samples")
    source = run.worker.source
    assert source is not None and source.native is not None and source.demux == demuxer
    delivered, skipped = source.native.counts[:2]
    run.wait_for(lambda p: p.frames_captured >= 6, 20, "3 more samples")
    more_delivered, more_skipped = source.native.counts[:2]
    assert run.stop() == WorkerExit.STOPPED
    delivered, skipped = more_delivered - delivered, more_skipped - skipped
    assert 3 <= delivered <= 8, delivered  # the keyframes: one or two per sample
    assert skipped >= 15 * delivered, (delivered, skipped)


@pytest.mark.parametrize("demuxer", ["rtp"])
def test_interrupt_stops_a_worker_blocked_on_a_frozen_camera(
    work_dir: Path, tmp_path: Path, demuxer: Demuxer
) -> None:
    """A camera that keeps its connection open but sends nothing (SIGSTOPped):
    the read would block for the read timeout; interrupt() ends it at once."""
    cam = make_camera(work_dir, name="frozen-camera").start()
    try:
        settings = capture_settings(
            cam.url(), read_timeout=20.0, capture_interval=0.5, demuxer=demuxer
        )
        run = start_worker(settings, dir_store(tmp_path))
        run.wait_for(lambda p: p.frames_captured >= 2, 20, "2 samples")
        os.kill(cam.process.pid, signal.SIGSTOP)
        time.sleep(1.0)  # the worker is now blocked in its read
        started = time.monotonic()
        run.stop_event.set()
        run.worker.interrupt()
        run.thread.join(5)
        assert not run.thread.is_alive()
        assert time.monotonic() - started < 2.0
        assert run.result["code"] == WorkerExit.STOPPED
        assert run.worker.source is None or run.worker.source.demux == demuxer
    finally:
        os.kill(cam.process.pid, signal.SIGCONT)
        cam.stop()
