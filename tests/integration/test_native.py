"""The native demuxer (capture/native.py, _packets.c) against the real camera."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
import pytest

from streamgrid.capture import native
from streamgrid.capture.settings import Demuxer
from streamgrid.capture.source import VideoSource
from streamgrid.core.crd import WorkerExit

from ..support.camera import Camera, make_camera
from ..support.worker import capture_settings, dir_store, start_worker

OPTIONS = {"rtsp_transport": "tcp", "allowed_media_types": "video"}


def test_the_native_demuxer_runs_here() -> None:
    """CI's FFmpeg (PyAV's) must pass the layout checks, or every worker would
    quietly fall back to the slower demux."""
    assert native.unavailable() is None


@pytest.fixture
def packets(camera: Camera) -> Iterator[native.NativePackets]:
    assert native.unavailable() is None
    reader = native.NativePackets()
    reader.open(camera.url(), OPTIONS, 10.0, 5.0)
    yield reader
    reader.close()


def test_every_packet_then_only_keyframes(packets: native.NativePackets) -> None:
    assert packets.codec_name == "h264"
    assert packets.time_base.denominator > 0
    every = [packets.read(False, 2.0) for _ in range(30)]
    assert all(p is not None for p in every)
    assert packets.counts == (30, 0)
    keyframes: list[native.NativePacket] = []
    while len(keyframes) < 3:
        got = packets.read(True, 2.0)
        if got is not None:
            keyframes.append(got)
    delivered, skipped = packets.counts
    assert delivered == 33
    assert skipped >= 2 * 20  # the camera's GOP is 25 packets
    for got in keyframes:
        assert got.keyframe and got.packet.is_keyframe
        # The packet before it, skipped in C, still shows the pace of arrival.
        assert got.pts is not None and got.previous_pts is not None
        assert got.previous_pts < got.pts
        assert got.previous_arrived is not None and got.previous_arrived <= got.arrived


def test_a_keyframe_decodes_alone_with_its_timestamp(packets: native.NativePackets) -> None:
    context: Any = av.CodecContext.create(packets.codec_name, "r")
    context.extradata = packets.extradata or None
    got = None
    while got is None or got.pts is None:
        got = packets.read(True, 2.0)
    frames = list(context.decode(got.packet)) + list(context.decode(None))
    assert len(frames) == 1
    frame = frames[0]
    assert (frame.width, frame.height) == (320, 240)
    assert frame.time == pytest.approx(float(got.pts * packets.time_base))
    luma = np.frombuffer(memoryview(frame.planes[0]), dtype=np.uint8)
    assert 0 < float(luma.mean()) < 255


def test_interrupt_ends_a_blocked_open_at_once(black_hole: int) -> None:
    reader = native.NativePackets()
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            reader.open(f"rtsp://127.0.0.1:{black_hole}/x", OPTIONS, 30.0, 30.0)
        except av.error.FFmpegError as exc:
            errors.append(exc)

    thread = threading.Thread(target=connect)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    reader.interrupt()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0
    assert len(errors) == 1  # RTSP reports the abort as ExitError or, mid-reply, InvalidData
    with pytest.raises(ValueError):  # a failed open leaves nothing to read
        reader.read(False, 0.1)


def test_open_deadline(black_hole: int) -> None:
    reader = native.NativePackets()
    started = time.monotonic()
    with pytest.raises(av.error.FFmpegError):
        reader.open(f"rtsp://127.0.0.1:{black_hole}/x", OPTIONS, 1.0, 30.0)
    assert 0.9 < time.monotonic() - started < 3.0


def test_refused_credentials_raise_pyavs_error(camera: Camera) -> None:
    reader = native.NativePackets()
    with pytest.raises(av.error.HTTPUnauthorizedError):
        reader.open(camera.secure_url(password="wrong"), OPTIONS, 10.0, 5.0)


@pytest.mark.parametrize("demuxer", ["rtp", "native", "pyav"])
def test_the_source_reports_its_demuxer(camera: Camera, demuxer: Demuxer) -> None:
    with VideoSource(camera.url(), demuxer=demuxer) as source:
        assert source.demux == demuxer
        assert source.codec_name() == "h264"


@pytest.mark.parametrize("demuxer", ["rtp", "native"])
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


@pytest.mark.parametrize("demuxer", ["rtp", "native"])
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
