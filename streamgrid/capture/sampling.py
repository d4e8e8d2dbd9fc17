"""TickSampler: one fresh picture per tick, decoding as little as possible.

Decoding is most of a worker's CPU, and most decoded pictures are never
sampled. The sampler sees every packet as it arrives (demuxing is cheap) and
decides what to decode:

``all``       decode every packet; at a tick take the newest picture. The
              reference point: what a naive reader does.
``lazy``      hold the packets since the last keyframe, undecoded; at a tick
              decode just those and take the newest picture. Pictures after
              the last tick of each GOP are never decoded. Fresh to the frame.
``keyframe``  at a tick, wait for the next keyframe and decode only it: one
              decode per sample. The picture is live when sampled; the sample
              is taken at most one GOP after its tick. Needs interval >= GOP.
``auto``      ``keyframe`` while the measured GOP fits in the interval (10 %
              slack for timestamp jitter), else ``lazy``. The first sample is
              always ``lazy``, for a quick start.

A tick is only served by a *live* packet, one that arrived at real-time pace
rather than drained from a backlog (the probe buffer after connecting, a burst
after a stall), so a sample is never a stale picture.

In ``keyframe`` mode the sampler has no use for any other packet, so it tells
the source (``keyframes_only()``), which can then skip them without handing
them to Python at all (capture/native.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

MAX_HELD_PACKETS = 600  # lazy mode: decode early past this, to bound memory


class DecodeMode(StrEnum):
    AUTO = "auto"
    ALL = "all"
    LAZY = "lazy"
    KEYFRAME = "keyframe"


class Decoder(Protocol):
    def decode(self, packet: Any) -> list[Any]:
        """Feed one packet; the pictures it completes, in order."""

    def drain(self) -> list[Any]:
        """Pictures still inside the decoder; afterwards it is ready for a keyframe."""

    def reset(self) -> None:
        """Drop all decoder state (before starting again from a keyframe)."""


@dataclass(slots=True)
class Arrival:
    packet: Any
    keyframe: bool
    pts_time: float | None  # seconds, stream clock
    arrived: float  # monotonic seconds
    live: bool


def arrived_live(
    previous: tuple[float, float] | None, pts_time: float | None, arrived: float
) -> bool:
    """A packet is live when it arrived at least half as long after the previous
    one, ``(arrived, pts_time)``, as their timestamps are apart; a backlog comes
    back to back."""
    if pts_time is None or previous is None:
        return False
    step = pts_time - previous[1]
    if step <= 0:  # reordered or repeated timestamps: arrival pace says nothing
        return True
    return arrived - previous[0] >= 0.5 * step


class LivenessTracker:
    """``arrived_live`` over a sequence of packets, each against the one before."""

    def __init__(self) -> None:
        self._previous: tuple[float, float] | None = None

    def observe(self, pts_time: float | None, arrived: float) -> bool:
        if pts_time is None:
            return False
        previous, self._previous = self._previous, (arrived, pts_time)
        return arrived_live(previous, pts_time, arrived)


class TickSampler:
    def __init__(
        self,
        decoder: Decoder,
        interval: float,
        mode: DecodeMode = DecodeMode.AUTO,
        started: float = 0.0,
    ) -> None:
        self.decoder = decoder
        self.started = started
        self.interval = interval
        self.mode = mode
        self.next_tick: float | None = None  # monotonic; None: sample as soon as possible
        self.gop: float | None = None  # seconds between the last two keyframes
        self.decodes = 0  # packets fed to the decoder (for benchmarks and tests)
        self.samples = 0
        self._last_keyframe_pts: float | None = None
        # Lazy state: packets not yet fed to the decoder, in order. They are
        # decodable once a keyframe has been seen; if they start with a keyframe
        # after skipped packets, the decoder is reset first.
        self._held: list[Any] = []
        self._decodable = False
        self._needs_reset = False
        self._synced_all = False  # all mode: a keyframe has been fed
        self._newest: Any = None  # all mode: newest decoded picture
        self._armed_for_keyframe = False

    # -- policy --------------------------------------------------------------
    def active_mode(self) -> DecodeMode:
        if self.mode is not DecodeMode.AUTO:
            return self.mode
        # 10 % slack: with GOP == interval, timestamp jitter must not flip the
        # mode sample by sample (a GOP a little longer only delays a sample).
        if self.samples == 0 or self.gop is None or self.gop > self.interval * 1.1:
            return DecodeMode.LAZY
        return DecodeMode.KEYFRAME

    def keyframes_only(self) -> bool:
        """Whether only keyframes matter until the next call: in keyframe mode no
        other packet can serve a tick, and the mode changes only at a keyframe
        (the GOP is measured from keyframes, and each keyframe restarts the held
        packets), so skipping the rest unseen changes nothing."""
        return self.mode is not DecodeMode.ALL and self.active_mode() is DecodeMode.KEYFRAME

    def offer(self, arrival: Arrival) -> Any | None:
        """Takes every packet; returns a picture when a tick is due and served."""
        if arrival.keyframe:
            self._note_keyframe(arrival.pts_time)
        if self.mode is DecodeMode.ALL:
            return self._offer_all(arrival)
        self._hold(arrival)
        if not self._tick_due(arrival.arrived) or not arrival.live:
            return None
        mode = self.active_mode()
        if mode is DecodeMode.KEYFRAME:
            self._armed_for_keyframe = True
            if not arrival.keyframe:
                return None
            picture = self._decode_keyframe_alone(arrival.packet)
        else:
            picture = self._decode_held()
        return self._sampled(picture, arrival.arrived)

    def overdue(self, now: float) -> float:
        """How long the due tick has gone unserved (0 if none is due)."""
        due = self.next_tick if self.next_tick is not None else self.started
        return max(0.0, now - due)

    # -- modes ---------------------------------------------------------------
    def _offer_all(self, arrival: Arrival) -> Any | None:
        if arrival.keyframe:
            self._synced_all = True
        if not self._synced_all:
            return None
        pictures = self._feed(arrival.packet)
        if pictures:
            self._newest = pictures[-1]
        if self._tick_due(arrival.arrived) and arrival.live and self._newest is not None:
            picture, self._newest = self._newest, None
            return self._sampled(picture, arrival.arrived)
        return None

    def _hold(self, arrival: Arrival) -> None:
        if arrival.keyframe:
            # Older packets only lead to older pictures: drop them and start the
            # decoder afresh from this keyframe when a picture is next needed.
            self._held = [arrival.packet]
            self._decodable = True
            self._needs_reset = True
            return
        if not self._decodable:
            return  # no keyframe yet: nothing here can be decoded
        self._held.append(arrival.packet)
        if len(self._held) > MAX_HELD_PACKETS:  # a very long GOP: bound the memory
            if self.active_mode() is DecodeMode.KEYFRAME:
                self._held, self._decodable = [], False  # the next keyframe serves
            else:
                self._decode_held()

    def _decode_held(self) -> Any | None:
        if self._needs_reset:
            self.decoder.reset()
            self._needs_reset = False
        newest = None
        for packet in self._held:
            pictures = self._feed(packet)
            if pictures:
                newest = pictures[-1]
        self._held = []  # the decoder is at the newest packet; carry on from there
        return newest

    def _decode_keyframe_alone(self, packet: Any) -> Any | None:
        self.decoder.reset()
        pictures = self._feed(packet) + self.decoder.drain()
        # A drained decoder cannot continue: should the lazy path need pictures
        # from this GOP, it decodes again from this keyframe.
        self._held = [packet]
        self._needs_reset = True
        self._armed_for_keyframe = False
        return pictures[-1] if pictures else None

    # -- bookkeeping ---------------------------------------------------------
    def _feed(self, packet: Any) -> list[Any]:
        self.decodes += 1
        return self.decoder.decode(packet)

    def _note_keyframe(self, pts_time: float | None) -> None:
        if pts_time is not None and self._last_keyframe_pts is not None:
            step = pts_time - self._last_keyframe_pts
            if step > 0:
                self.gop = step
        if pts_time is not None:
            self._last_keyframe_pts = pts_time

    def _tick_due(self, now: float) -> bool:
        return self.next_tick is None or now >= self.next_tick or self._armed_for_keyframe

    def _sampled(self, picture: Any | None, now: float) -> Any | None:
        if picture is None:
            return None  # decoder delay or a damaged packet: the next packet serves the tick
        self.samples += 1
        self._armed_for_keyframe = False  # whatever served the tick, it is served
        # Fixed schedule; after a stall (or a late keyframe), restart it from now.
        base = self.next_tick if self.next_tick is not None else now
        self.next_tick = base + self.interval
        if self.next_tick <= now:
            self.next_tick = now + self.interval
        return picture
