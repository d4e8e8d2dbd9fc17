"""TickSampler's decode policy, with a decoder that counts what it is fed."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from streamgrid.capture.sampling import (
    MAX_HELD_PACKETS,
    Arrival,
    DecodeMode,
    LivenessTracker,
    TickSampler,
    arrived_live,
)

FPS = 25


@dataclass
class Packet:
    n: int  # frame number
    keyframe: bool


@dataclass
class CountingDecoder:
    """Returns, for each packet fed, the frame number it completes, and checks
    the decoder is only ever fed a valid reference chain."""

    fed: list[int] = field(default_factory=list)
    resets: int = 0
    _chain: int | None = None  # frame number the decoder is at

    def decode(self, packet: Packet) -> list[int]:
        self.fed.append(packet.n)
        if packet.keyframe:
            self._chain = packet.n
        else:
            assert self._chain == packet.n - 1, f"fed {packet.n} after {self._chain}"
            self._chain = packet.n
        return [packet.n]

    def drain(self) -> list[int]:
        self._chain = None
        return []

    def reset(self) -> None:
        self.resets += 1
        self._chain = None


def stream(seconds: float, gop_frames: int, start: float = 100.0) -> list[Arrival]:
    """A live camera: one packet every 1/FPS s, a keyframe every gop_frames."""
    return [
        Arrival(
            Packet(n, n % gop_frames == 0),
            n % gop_frames == 0,
            n / FPS,
            start + n / FPS,
            live=n > 0,
        )
        for n in range(int(seconds * FPS))
    ]


def run(
    mode: DecodeMode,
    interval: float,
    gop_frames: int,
    seconds: float = 60,
    skip: bool = False,
) -> tuple[TickSampler, CountingDecoder, list[tuple[int, float]]]:
    """``skip``: as the native demuxer does, never offer a non-keyframe while
    the sampler says ``keyframes_only()``."""
    decoder = CountingDecoder()
    sampler = TickSampler(decoder, interval, mode, started=100.0)
    samples = []
    for arrival in stream(seconds, gop_frames):
        if skip and sampler.keyframes_only() and not arrival.keyframe:
            continue
        picture = sampler.offer(arrival)
        if picture is not None:
            newest = round((arrival.arrived - 100.0) * FPS)
            samples.append((picture, arrival.arrived))
            # Freshness: the sampled picture is the newest packet's (keyframe
            # mode samples a keyframe as it arrives: also the newest).
            assert picture == newest
    return sampler, decoder, samples


@pytest.mark.parametrize("mode", list(DecodeMode))
@pytest.mark.parametrize(("interval", "gop_frames"), [(1.0, 50), (2.0, 50), (5.0, 25), (0.2, 50)])
def test_one_fresh_sample_per_tick_in_every_mode(
    mode: DecodeMode, interval: float, gop_frames: int
) -> None:
    sampler, _, samples = run(mode, interval, gop_frames)
    gop = gop_frames / FPS
    expected = 60 / interval
    if mode is DecodeMode.KEYFRAME and gop > interval:
        expected = 60 / gop  # keyframes come less often than ticks
    assert abs(len(samples) - expected) <= 2, (len(samples), expected)
    assert sampler.samples == len(samples)


def test_keyframe_mode_decodes_one_packet_per_sample() -> None:
    _sampler, decoder, samples = run(DecodeMode.KEYFRAME, interval=5.0, gop_frames=50)
    assert decoder.fed == [n for n, _ in samples]


def test_auto_uses_keyframes_once_the_gop_fits_the_interval() -> None:
    sampler, decoder, samples = run(DecodeMode.AUTO, interval=2.0, gop_frames=50)
    assert sampler.gop == pytest.approx(2.0)
    assert sampler.active_mode() is DecodeMode.KEYFRAME
    # First sample lazily (quick start), then one decode per sample.
    assert len(decoder.fed) <= len(samples) + 2


def test_auto_is_lazy_when_the_interval_is_shorter_than_a_gop() -> None:
    sampler, decoder, _samples = run(DecodeMode.AUTO, interval=1.0, gop_frames=50)
    assert sampler.active_mode() is DecodeMode.LAZY
    _all_sampler, all_decoder, _ = run(DecodeMode.ALL, interval=1.0, gop_frames=50)
    # The second half of every GOP (after its last tick) is never decoded.
    assert len(decoder.fed) < 0.8 * len(all_decoder.fed)
    assert len(all_decoder.fed) == 60 * FPS


def test_backlog_packets_never_serve_a_tick() -> None:
    decoder = CountingDecoder()
    sampler = TickSampler(decoder, 1.0, DecodeMode.LAZY, started=0.0)
    burst = [Arrival(Packet(n, n == 0), n == 0, n / FPS, 10.0, live=False) for n in range(30)]
    assert all(sampler.offer(a) is None for a in burst)
    live = Arrival(Packet(30, False), False, 30 / FPS, 10.04, live=True)
    assert sampler.offer(live) == 30


def test_nothing_is_decoded_before_the_first_keyframe() -> None:
    decoder = CountingDecoder()
    sampler = TickSampler(decoder, 1.0, DecodeMode.LAZY, started=0.0)
    for n in range(1, 10):
        assert sampler.offer(Arrival(Packet(n, False), False, n / FPS, n / FPS, True)) is None
    assert decoder.fed == []
    assert sampler.overdue(5.0) == pytest.approx(5.0)


def test_held_packets_are_bounded_on_a_very_long_gop() -> None:
    sampler, _decoder, samples = run(DecodeMode.LAZY, interval=100.0, gop_frames=10_000, seconds=60)
    assert len(sampler._held) <= MAX_HELD_PACKETS
    assert len(samples) == 1


@pytest.mark.parametrize("mode", list(DecodeMode))
@pytest.mark.parametrize(("interval", "gop_frames"), [(1.0, 25), (2.0, 50), (5.0, 25), (0.2, 50)])
def test_skipping_what_keyframes_only_allows_changes_no_sample(
    mode: DecodeMode, interval: float, gop_frames: int
) -> None:
    _, all_decoder, all_samples = run(mode, interval, gop_frames)
    sampler, decoder, samples = run(mode, interval, gop_frames, skip=True)
    assert samples == all_samples
    assert decoder.fed == all_decoder.fed
    fits = gop_frames / FPS <= interval
    expected = mode is DecodeMode.KEYFRAME or (mode is DecodeMode.AUTO and fits)
    assert sampler.keyframes_only() is expected  # when True, most packets were never offered


def test_liveness_is_judged_against_the_packet_before() -> None:
    assert arrived_live(None, 0.04, 10.0) is False
    assert arrived_live((10.0, 0.0), None, 10.04) is False
    assert arrived_live((10.0, 0.0), 0.04, 10.001) is False  # back to back: a backlog
    assert arrived_live((10.0, 0.0), 0.04, 10.03) is True  # at least half the pace
    assert arrived_live((10.0, 0.04), 0.04, 10.0) is True  # repeated timestamp


def test_liveness_follows_arrival_pace() -> None:
    tracker = LivenessTracker()
    assert tracker.observe(0.0, 10.0) is False  # nothing to compare yet
    assert tracker.observe(0.04, 10.001) is False  # a backlog: back to back
    assert tracker.observe(0.08, 10.041) is True  # real-time pace
    assert tracker.observe(None, 10.08) is False


def test_gop_jitter_around_the_interval_keeps_one_sample_per_tick() -> None:
    """GOP == interval with jittery timestamps must not flip the mode while a
    keyframe is awaited (that once made every packet a sample)."""
    decoder = CountingDecoder()
    sampler = TickSampler(decoder, 1.0, DecodeMode.AUTO, started=100.0)
    samples = 0
    for n in range(60 * FPS):
        jitter = 0.001 if (n // FPS) % 2 else -0.001  # the GOP swings 0.998 / 1.002 s

        arrival = Arrival(
            Packet(n, n % FPS == 0), n % FPS == 0, n / FPS + jitter, 100.0 + n / FPS, live=n > 0
        )
        if sampler.offer(arrival) is not None:
            samples += 1
    assert 55 <= samples <= 61, samples
    assert sampler.active_mode() is DecodeMode.KEYFRAME
    assert len(decoder.fed) <= samples + 30  # one decode per sample, after the lazy start
