"""The worker's RTSP client against RTSP servers we did not write (issue 11).

mediamtx (Go; gortsplib) relays what ffmpeg publishes into it, as most camera
gateways do; live555 (C++) serves files the way many cameras' firmware does.
Both are built from pinned sources by ``make interop-tools`` (tools/mediamtx,
tools/live555) and run on 127.0.0.1 only. Each case drives the worker's own
receive path: ``VideoSource(url, demuxer="rtp")`` and its decoder, or the
in-process worker where the states matter. The exact versions are in
tools/mediamtx/go.mod and tools/live555/build.sh.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streamgrid.capture import rtp
from streamgrid.capture.sampling import DecodeMode, TickSampler
from streamgrid.capture.source import SourceFatalError, VideoSource
from streamgrid.core.models import StreamState
from testbed import live555, mediamtx
from testbed.live555 import Live555
from testbed.media import SINE, TESTSRC, h264_args, h265_args, make_clip, video_input
from testbed.mediamtx import MediaMtx
from testbed.worker import capture_settings, dir_store, start_worker

FPS = 25
WIDTH, HEIGHT = 640, 360
FOUR_K = (3840, 2160)

# -- clips (cached in ~/.cache/streamgrid/media by their ffmpeg arguments) ----


def h264_bframes_clip() -> Path:
    """High profile with two B-frames between references, as many cameras send."""
    args = video_input(WIDTH, HEIGHT, FPS, 4) + h264_args(profile="high", bframes=2)
    return make_clip("h264-high-bframes", ".mp4", args)


def h265_clip() -> Path:
    return make_clip("h265", ".mp4", video_input(WIDTH, HEIGHT, FPS, 4) + h265_args())


def audio_first_clip() -> Path:
    """AAC as the first stream, so the first m= line of the SDP is audio."""
    args = [
        "-f", "lavfi", "-i", TESTSRC.format(width=320, height=240, fps=FPS),
        "-f", "lavfi", "-i", SINE, "-t", "4",
        "-map", "1:a", "-map", "0:v", *h264_args(), "-c:a", "aac", "-b:a", "64k",
    ]  # fmt: skip
    return make_clip("audio-first", ".mp4", args)


def four_k_clip() -> Path:
    """3840x2160 at a few frames a second, high quality: keyframes far over 64 KiB."""
    args = video_input(*FOUR_K, 5, 2) + h264_args(gop=5, preset="ultrafast") + ["-crf", "18"]
    return make_clip("h264-4k", ".mp4", args)


def gop_one_second_clip() -> Path:
    """25 fps with a keyframe every 25 frames: one GOP per capture interval."""
    return make_clip("h264-gop25", ".mp4", video_input(320, 240, FPS, 6) + h264_args(gop=FPS))


STRETCH_KEYFRAMES = [0, 1, 2, 3, 7, 11, 12, 13]  # seconds: GOP 1 s, then 4 s twice, then 1 s


def stretching_gop_clip() -> Path:
    """A camera's "smart codec": a keyframe every second, then none for 4 s (a
    still scene), twice, then every second again; 14 s, looped."""
    times = ",".join(map(str, STRETCH_KEYFRAMES))
    never = ["-g", "1000", "-keyint_min", "1000"]  # only the forced keyframes
    args = [*video_input(320, 240, FPS, 14), *h264_args(), *never, "-force_key_frames", times]
    return make_clip("h264-stretching-gop", ".mp4", args)


def elementary_clip(codec: str) -> Path:
    """An Annex B file for live555, long enough for every case (it does not loop)."""
    encoder = h264_args(gop=FPS) if codec == "h264" else h265_args(gop=FPS)
    muxer, suffix = ("h264", ".264") if codec == "h264" else ("hevc", ".265")
    args = video_input(WIDTH, HEIGHT, FPS, 12) + encoder + ["-f", muxer]
    return make_clip(f"elementary-{codec}", suffix, args)


# -- servers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def interop_dir(work_dir: Path) -> Path:
    path = work_dir / "interop"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def mtx(interop_dir: Path) -> Iterator[MediaMtx]:
    """mediamtx asking for Basic; public paths for each clip, and a secure one."""
    server = MediaMtx(interop_dir, "mediamtx-basic", auth="basic").start()
    try:
        server.publish("pub-h264-bframes", h264_bframes_clip())
        server.publish("pub-h265", h265_clip())
        server.publish("pub-audio-first", audio_first_clip())
        server.publish("pub-4k", four_k_clip())
        server.publish("pub-gop25", gop_one_second_clip())
        server.publish("pub-stretch", stretching_gop_clip())
        server.publish(mediamtx.SECURE_PATH, gop_one_second_clip())
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mtx_udp(interop_dir: Path) -> Iterator[MediaMtx]:
    """mediamtx that serves RTP over UDP only: SETUP over TCP gets 461."""
    server = MediaMtx(interop_dir, "mediamtx-udp", udp_only=True).start()
    try:
        server.publish("pub-gop25", gop_one_second_clip())
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mtx_digest(interop_dir: Path) -> Iterator[MediaMtx]:
    """mediamtx asking for Digest only."""
    server = MediaMtx(interop_dir, "mediamtx-digest", auth="digest").start()
    try:
        server.publish(mediamtx.SECURE_PATH, gop_one_second_clip())
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def l555(interop_dir: Path) -> Iterator[Live555]:
    files = {"h264": elementary_clip("h264"), "h265": elementary_clip("h265")}
    server = Live555(interop_dir, "live555", files).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def l555_digest(interop_dir: Path) -> Iterator[Live555]:
    files = {"h264": elementary_clip("h264")}
    server = Live555(interop_dir, "live555-digest", files, with_auth=True).start()
    try:
        yield server
    finally:
        server.stop()


# -- receiving through the worker's path ------------------------------------


@dataclass
class Received:
    codec: str = ""
    auth_scheme: str = ""  # what the client answered: basic, digest, or none
    extradata: bytes = b""
    keyframe_sizes: list[int] = field(default_factory=list)
    in_band_parameter_sets: bool = False
    sizes: set[tuple[int, int]] = field(default_factory=set)
    pts: list[float] = field(default_factory=list)  # of decoded pictures, in order
    arrival_pts: list[float] = field(default_factory=list)  # of access units, as sent
    wall_seconds: float = 0.0

    @property
    def pictures(self) -> int:
        return len(self.pts)

    @property
    def reordered(self) -> bool:
        """Whether units came out of display order (B-frames)."""
        return any(b < a for a, b in zip(self.arrival_pts, self.arrival_pts[1:], strict=False))

    @property
    def span(self) -> float:
        return self.pts[-1] - self.pts[0] if self.pts else 0.0


def nal_types(unit: bytes, hevc: bool) -> set[int]:
    """The NAL unit types of an Annex B access unit."""
    types, start = set(), 0
    while (found := unit.find(b"\x00\x00\x01", start)) >= 0 and found + 3 < len(unit):
        header = unit[found + 3]
        types.add((header >> 1) & 0x3F if hevc else header & 0x1F)
        start = found + 3
    return types


def receive(url: str, stream_seconds: float, limit: float = 30.0) -> Received:
    """Decoded pictures until their timestamps span ``stream_seconds`` (the
    stream's clock, not the machine's); ``limit`` only bounds a stuck read."""
    got = Received()
    parameter_sets = {7, 8}  # SPS, PPS; H.265: VPS, SPS, PPS
    with VideoSource(url, demuxer="rtp", open_timeout=10.0, read_timeout=5.0) as source:
        assert source.demux == "rtp"
        packets = source.native
        assert isinstance(packets, rtp.RtpPackets)
        creds = packets.session.creds
        got.auth_scheme = creds.scheme if creds is not None else "none"
        got.codec, got.extradata = source.codec_name(), packets.extradata
        hevc = got.codec == "hevc"
        if hevc:
            parameter_sets = {32, 33, 34}
        decoder = source.decoder()
        stop = threading.Event()
        started = time.monotonic()
        for arrival in source.arrivals(stop):
            assert time.monotonic() - started < limit, f"{got.pictures} pictures in {limit} s"
            if arrival is None:
                continue
            unit = bytes(arrival.packet)
            if arrival.pts_time is not None:
                got.arrival_pts.append(arrival.pts_time)
            if arrival.keyframe:
                got.keyframe_sizes.append(len(unit))
            if nal_types(unit, hevc) & parameter_sets:
                got.in_band_parameter_sets = True
            for frame in decoder.decode(arrival.packet):
                got.sizes.add((frame.width, frame.height))
                assert frame.time is not None, "a picture without a timestamp"
                got.pts.append(float(frame.time))
            if got.span >= stream_seconds:
                break
        got.wall_seconds = time.monotonic() - started
    return got


def assert_pictures_plausible(got: Received, size: tuple[int, int], fps: int = FPS) -> None:
    """The right size, in display order, about one per frame interval."""
    assert got.sizes == {size}, got.sizes
    assert all(b > a for a, b in zip(got.pts, got.pts[1:], strict=False)), "out of order"
    expected = got.span * fps + 1
    print(
        f"{got.pictures} pictures over {got.span:.2f} s of stream "
        f"(expected {expected:.0f}), {got.wall_seconds:.2f} s of wall clock"
    )
    assert 0.9 * expected <= got.pictures <= 1.1 * expected + 1


# -- mediamtx -----------------------------------------------------------------


def test_mediamtx_h264_high_profile_with_b_frames(mtx: MediaMtx) -> None:
    status, sdp = mediamtx.describe(mtx.port, "pub-h264-bframes")
    assert status == 200 and "profile-level-id=64" in sdp, sdp  # High
    got = receive(mtx.url("pub-h264-bframes"), 3.0)
    assert got.codec == "h264"
    assert got.reordered, "the premise: B-frames, sent out of display order"
    assert_pictures_plausible(got, (WIDTH, HEIGHT))


def test_mediamtx_h265(mtx: MediaMtx) -> None:
    got = receive(mtx.url("pub-h265"), 3.0)
    assert got.codec == "hevc"
    assert_pictures_plausible(got, (WIDTH, HEIGHT))


def test_mediamtx_audio_track_first_in_the_sdp(mtx: MediaMtx) -> None:
    status, sdp = mediamtx.describe(mtx.port, "pub-audio-first")
    assert status == 200 and sdp.index("m=audio") < sdp.index("m=video"), sdp
    got = receive(mtx.url("pub-audio-first"), 2.0)
    assert got.codec == "h264"
    assert_pictures_plausible(got, (320, 240))


def test_mediamtx_parameter_sets_only_in_the_sdp(mtx: MediaMtx) -> None:
    """ffmpeg publishing an mp4 with -c copy sends SPS/PPS only as the SDP's
    sprop-parameter-sets: the decoder must get them from there."""
    status, sdp = mediamtx.describe(mtx.port, "pub-h264-bframes")
    assert status == 200 and "sprop-parameter-sets=" in sdp, sdp
    got = receive(mtx.url("pub-h264-bframes"), 1.0)
    assert not got.in_band_parameter_sets, "the premise: no SPS/PPS among the data"
    assert got.extradata.startswith(b"\x00\x00\x00\x01")
    assert got.pictures > 0 and got.sizes == {(WIDTH, HEIGHT)}


def test_mediamtx_4k_keyframes_over_64_kib(mtx: MediaMtx) -> None:
    got = receive(mtx.url("pub-4k"), 1.0)
    assert got.keyframe_sizes and max(got.keyframe_sizes) > 64 * 1024, got.keyframe_sizes
    print(f"keyframes of {[size // 1024 for size in got.keyframe_sizes]} KiB")
    assert got.pictures >= 2 and got.sizes == {FOUR_K}


def test_mediamtx_basic_auth_right_password(mtx: MediaMtx) -> None:
    got = receive(mtx.secure_url(), 1.0)
    assert got.auth_scheme == "basic"
    assert got.pictures > 0 and got.sizes == {(320, 240)}


def test_mediamtx_digest_auth_right_password(mtx_digest: MediaMtx) -> None:
    got = receive(mtx_digest.secure_url(), 1.0)
    assert got.auth_scheme == "digest"
    assert got.pictures > 0 and got.sizes == {(320, 240)}


@pytest.mark.parametrize("auth", ["basic", "digest"])
def test_mediamtx_wrong_password_is_fatal_without_the_password(
    auth: str, request: pytest.FixtureRequest
) -> None:
    server: MediaMtx = request.getfixturevalue("mtx" if auth == "basic" else "mtx_digest")
    wrong = "Wr0ng-Mtx-pw-xyz"
    with pytest.raises(SourceFatalError) as refused:
        VideoSource(server.secure_url(wrong), demuxer="rtp", open_timeout=10.0).__enter__()
    reason = str(refused.value)
    assert "401" in reason, reason
    assert wrong not in reason and mediamtx.PASSWORD not in reason


def test_mediamtx_killed_and_restarted_the_worker_reconnects(
    interop_dir: Path, tmp_path: Path
) -> None:
    server = MediaMtx(interop_dir, "mediamtx-restart").start()
    try:
        server.publish("pub-cam", gop_one_second_clip())
        settings = capture_settings(server.url("pub-cam"), demuxer="rtp", read_timeout=2.0)
        run = start_worker(settings, dir_store(tmp_path))
        try:
            run.wait_for(lambda p: p.frames_captured >= 3, 30, "3 samples")
            server.kill()
            run.wait_for(lambda p: p.state == StreamState.RECONNECTING, 15, "reconnecting")
            count = run.worker.frames_captured
            server.start()  # the same port; publishing again
            run.wait_for(lambda p: p.state == StreamState.ACTIVE, 30, "active again")
            run.wait_for(lambda p: p.frames_captured >= count + 3, 20, "samples again")
        finally:
            run.stop()
        states = run.progress.states()
        assert StreamState.FAILED not in states, run.progress.reports[-5:]
        reconnecting = states.index(StreamState.RECONNECTING)
        assert StreamState.ACTIVE in states[reconnecting:]
    finally:
        server.stop()


def test_mediamtx_gop_equal_to_the_capture_interval(mtx: MediaMtx, tmp_path: Path) -> None:
    """A keyframe every second and a sample every second: the sampler should
    take (nearly) every tick. Only a loose bound is asserted; the ratio is
    printed."""
    settings = capture_settings(mtx.url("pub-gop25"), demuxer="rtp", capture_interval=1.0)
    run = start_worker(settings, dir_store(tmp_path))
    try:
        run.wait_for(lambda p: p.frames_captured >= 1, 30, "a first sample")
        first, started = run.worker.frames_captured, time.monotonic()
        time.sleep(8.0)
        samples, elapsed = run.worker.frames_captured - first, time.monotonic() - started
    finally:
        run.stop()
    ticks = elapsed / settings.capture_interval
    print(f"GOP = interval: {samples} samples in {ticks:.1f} ticks, ratio {samples / ticks:.2f}")
    assert samples >= ticks / 2, f"{samples} samples in {ticks:.1f} ticks"


def test_a_server_refusing_tcp_is_read_over_udp(mtx_udp: MediaMtx) -> None:
    """461 Unsupported transport to our client's interleaved SETUP: auto reads
    the camera over UDP through FFmpeg instead of reconnecting forever."""
    with VideoSource(mtx_udp.url("pub-gop25"), open_timeout=10.0) as source:
        assert (source.demux, source.transport) == ("pyav", "udp")
        decoder, pictures = source.decoder(), 0
        for arrival in source.arrivals(threading.Event()):
            if arrival is not None:
                pictures += len(decoder.decode(arrival.packet))
            if pictures >= 10:
                break
    assert pictures >= 10


def test_a_server_refusing_tcp_fails_the_rtp_demuxer_with_the_reason(mtx_udp: MediaMtx) -> None:
    with pytest.raises(SourceFatalError, match=r"refused RTSP over TCP.*461"):
        VideoSource(mtx_udp.url("pub-gop25"), demuxer="rtp").__enter__()


def test_a_camera_stretching_its_gop_delays_no_sample(mtx: MediaMtx) -> None:
    """Keyframes every second, then 4 s apart: the sampler gives up on the
    keyframe the last GOP promised a frame or two after its time, and serves
    the tick from the packets since the last one (which the C receive loop
    held back, not dropped), instead of waiting up to 3 s for it."""
    samples: list[tuple[float, bool]] = []  # (when, taken as a keyframe alone)
    with VideoSource(mtx.url("pub-stretch"), demuxer="rtp", open_timeout=10.0) as source:
        assert source.recovers_skipped, "the rtp reader holds what it skips"

        sampler = TickSampler(
            source.decoder(), 1.0, DecodeMode.AUTO, time.monotonic(), recovers_skipped=True
        )
        started = time.monotonic()
        for arrival in source.arrivals(threading.Event(), sampler.skipping_until):
            if arrival is not None:
                decodes = sampler.decodes
                if sampler.offer(arrival) is not None:
                    samples.append((arrival.arrived, sampler.decodes - decodes == 1))
            if time.monotonic() - started > 16.0:  # the 14 s clip and then some
                break
    times = [t for t, _ in samples]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    print(f"{len(samples)} samples, gaps {min(gaps):.2f}-{max(gaps):.2f} s")
    assert len(samples) >= 13, len(samples)
    assert max(gaps) < 2.0, gaps  # waiting for the stretched keyframe: 3-4 s
    assert sum(alone for _, alone in samples) >= 4, "keyframes alone while the GOP fits"


# -- live555 ------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_live555_elementary_stream_files(l555: Live555, codec: str) -> None:
    got = receive(l555.url(codec), 2.0)
    assert got.codec == ("hevc" if codec == "h265" else "h264")
    assert_pictures_plausible(got, (WIDTH, HEIGHT))


def test_live555_digest_right_password(l555_digest: Live555) -> None:
    try:
        got = receive(l555_digest.url("h264"), 1.0)
    except SourceFatalError as exc:
        seen = "\n".join(l555_digest.requests_received("DESCRIBE")[-2:])
        pytest.fail(f"{exc}; live555 received:\n{seen}")
    assert got.auth_scheme == "digest"
    assert got.pictures > 0 and got.sizes == {(WIDTH, HEIGHT)}


def test_live555_digest_wrong_password(l555_digest: Live555) -> None:
    wrong = "Wr0ng-L555-pw-xyz"
    with pytest.raises(SourceFatalError) as refused:
        VideoSource(l555_digest.url("h264", wrong), demuxer="rtp").__enter__()
    reason = str(refused.value)
    assert "401" in reason, reason
    assert wrong not in reason and live555.PASSWORD not in reason
