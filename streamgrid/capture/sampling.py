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
              Should the keyframe not come when the GOP said it would (a
              camera that stretches its GOP: "smart codecs", variable frame
              rate), the tick is served from the packets since the last
              keyframe instead, ``KEYFRAME_GRACE`` after that time.
``auto``      ``keyframe`` while the measured GOP fits in the interval (10 %
              slack for timestamp jitter), else ``lazy``. The first sample is
              always ``lazy``, for a quick start.

A tick is only served by a *live* packet, one that arrived at real-time pace
rather than drained from a backlog (the probe buffer after connecting, a burst
after a stall), so a sample is never a stale picture. One exception, in
``keyframe`` mode: a keyframe at most ``STALE_AFTER`` late whose timestamp is
an interval past the last sample's is the tick's own picture, however its
server delayed it (a backlog's pictures are older than that).

Ticks are a fixed schedule, one every interval. A tick may be served up to
``early`` before it is due: with GOP == interval, keyframes come about when
ticks do, and a few milliseconds of jitter must not decide between a sample now
and one a whole GOP later. A tick served so late that the next is due already
restarts the schedule from that sample's own time (its arrival less its
lateness, so that the next picture on time serves the next tick), rather than
chasing it.

In ``keyframe`` mode the sampler has no use for any other packet until the
keyframe it waits for is overdue, so it tells the source
(``skipping_until()``), which can then keep them from Python (capture/rtp.py
holds them in C and hands them over if asked).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

MAX_HELD_PACKETS = 600  # lazy mode: decode early past this, to bound memory
EARLY_MAX = 0.1  # seconds a tick may be served before it is due (and 10 % of the interval)
# How long past the time the GOP predicts the keyframe mode waits for a keyframe
# before it serves the tick from the packets held since the last one: a frame or
# two at camera rates, and more than the jitter of a keyframe's arrival.
KEYFRAME_GRACE = 0.1


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
    # Some packet since the last keyframe was lost or skipped for good: this one
    # does not decode from that keyframe (capture/rtp.py knows; others don't).
    after_gap: bool = False
    # Seconds behind the least delay seen on the connection (LivenessTracker.late).
    late: float | None = None


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


# How late (against the least-delayed unit seen) a unit may arrive and still be
# live: a big keyframe takes a while to send, and a server may hold a frame back
# to send it with the next one; a stall or a backlog is much later than this.
LATE_TOLERANCE = 0.25
# The baseline may creep up this much per second: the camera's clock may run a
# little slower than ours (crystals differ by tens of ppm; this allows 1000).
BASELINE_DRIFT = 1e-3
# Later than this against that baseline, a unit is stale even at pace (the first
# unit after a stall, a backlog drained at more than half speed).
STALE_AFTER = 1.0
# Units at pace but that late for this long mean the baseline is what is wrong
# (the camera stepped its clock back a few seconds, or its clock runs slow by
# more than BASELINE_DRIFT): it is set again from them.
REANCHOR_AFTER = 2.0
# A jump in timestamps this large (either way) is a new timeline, not lateness.
TIMELINE_JUMP = 10.0


class LivenessTracker:
    """Whether each unit is live: arrived at real-time pace, not drained from a
    backlog (a burst after connecting or after a stall).

    Two ways to pass, either is enough:
    - pace: against the unit just before it (``arrived_live``);
    - lateness: its delay, arrival time minus timestamp, is within
      ``LATE_TOLERANCE`` of the least delay seen on this connection. This one
      counts only once some unit has passed on pace, so a backlog at connect
      cannot set the baseline; it rescues a unit that came in the same read as
      the one before it (a server that sends two frames in one burst), which
      pace alone calls a backlog.
    Once some unit has passed on pace, a unit more than ``STALE_AFTER`` late is
    not live, whatever its pace, unless such units keep coming at pace for
    ``REANCHOR_AFTER``: then the baseline is taken again from them.
    """

    def __init__(self) -> None:
        self._previous: tuple[float, float] | None = None
        self._baseline: float | None = None  # least (arrived - pts) seen, drifting
        self._baseline_at = 0.0
        self._paced = False  # some unit has passed on pace
        self._stale_since: float | None = None  # a run of units at pace, yet stale
        # The last unit's lateness, once a unit has passed on pace (before that
        # the baseline may be a backlog's); None if unknown.
        self.late: float | None = None

    def observe(
        self,
        pts_time: float | None,
        arrived: float,
        previous: tuple[float, float] | None = None,
    ) -> bool:
        """``previous``: the unit before this one, ``(arrived, pts_time)``, when the
        reader skipped it (keyframes only); else the last one observed here."""
        self.late = None
        if pts_time is None:
            return False
        if previous is None:
            previous = self._previous
        self._previous = (arrived, pts_time)
        if previous is not None and abs(pts_time - previous[1]) > TIMELINE_JUMP:
            self._baseline, self._paced = None, False  # the camera restarted its clock
            return False
        paced = arrived_live(previous, pts_time, arrived)
        if previous is not None:
            self._lower_baseline(previous[0] - previous[1], previous[0])
        delay = arrived - pts_time
        self._lower_baseline(delay, arrived)
        assert self._baseline is not None
        late = delay - self._baseline
        if not self._paced:
            self._paced = paced
            return paced
        self.late = late
        if not (paced and late > STALE_AFTER):
            self._stale_since = None
            return late <= (STALE_AFTER if paced else LATE_TOLERANCE)
        if self._stale_since is None:
            self._stale_since = arrived
        elif arrived - self._stale_since >= REANCHOR_AFTER:
            self._baseline, self._baseline_at, self._stale_since = delay, arrived, None
            self.late = 0.0
            return True
        return False

    def _lower_baseline(self, delay: float, at: float) -> None:
        if self._baseline is None:
            self._baseline, self._baseline_at = delay, at
            return
        crept = self._baseline + BASELINE_DRIFT * max(0.0, at - self._baseline_at)
        self._baseline, self._baseline_at = min(crept, delay), max(at, self._baseline_at)


class TickSampler:
    def __init__(
        self,
        decoder: Decoder,
        interval: float,
        mode: DecodeMode = DecodeMode.AUTO,
        started: float = 0.0,
        recovers_skipped: bool = False,
        observe_decode: Callable[[float, bool], None] | None = None,
    ) -> None:
        self.decoder = decoder
        # Told each decode's seconds and whether it was a keyframe (metrics).
        self.observe_decode = observe_decode
        self.started = started
        self.interval = interval
        self.mode = mode
        self.early = min(EARLY_MAX, 0.1 * interval)
        # Whether packets skipped while keyframes only were wanted come back when
        # asked (capture/rtp.py), so that a late keyframe can be given up on.
        self.recovers_skipped = recovers_skipped
        self.next_tick: float | None = None  # monotonic; None: sample as soon as possible
        self.gop: float | None = None  # seconds between the last two keyframes
        self.decodes = 0  # packets fed to the decoder (for benchmarks and tests)
        self.samples = 0
        self.last_lag = 0.0  # seconds the last sample came after its tick
        self._last_keyframe_pts: float | None = None
        self._last_keyframe_arrived: float | None = None
        self._last_sample_pts: float | None = None  # stream clock, of the last sample's unit
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

    def skipping_until(self) -> float | None:
        """Until when (monotonic) only keyframes matter: None, every packet
        matters now; ``math.inf``, until a keyframe. In keyframe mode no other
        packet can serve a tick until the keyframe awaited is overdue, and the
        mode changes only at a keyframe (the GOP is measured from keyframes, and
        each keyframe restarts the held packets), so skipping the rest unseen,
        and seeing them afterwards if the keyframe is late, changes nothing."""
        if self.mode is DecodeMode.ALL or self.active_mode() is not DecodeMode.KEYFRAME:
            return None
        return self._keyframe_deadline() if self.recovers_skipped else math.inf

    def offer(self, arrival: Arrival) -> Any | None:
        """Takes every packet; returns a picture when a tick is due and served."""
        if arrival.keyframe:
            self._note_keyframe(arrival.pts_time, arrival.arrived)
        if self.mode is DecodeMode.ALL:
            return self._offer_all(arrival)
        self._hold(arrival)
        if not self._tick_due(arrival.arrived, arrival.keyframe):
            return None
        mode = self.active_mode()
        if not (arrival.live or (mode is DecodeMode.KEYFRAME and self._pictures_the_tick(arrival))):
            return None
        if mode is DecodeMode.KEYFRAME:
            self._armed_for_keyframe = True
            if arrival.keyframe:
                picture = self._decode_keyframe_alone(arrival.packet)
            elif (
                self.recovers_skipped
                and self._decodable
                and arrival.arrived >= self._keyframe_deadline()
                and self._past_the_keyframe(arrival.pts_time)
            ):
                picture = self._decode_held()  # the keyframe is late: the GOP stretched
            else:
                return None
        else:
            picture = self._decode_held()
        return self._sampled(picture, arrival, mode)

    def overdue(self, now: float) -> float:
        """How long the due tick has gone unserved (0 if none is due)."""
        due = self.next_tick if self.next_tick is not None else self.started
        return max(0.0, now - due)

    # -- modes ---------------------------------------------------------------
    def _offer_all(self, arrival: Arrival) -> Any | None:
        if arrival.keyframe:
            self._synced_all = True
        elif arrival.after_gap:
            self._synced_all = False
        if not self._synced_all:
            return None
        pictures = self._feed(arrival.packet, arrival.keyframe)
        if pictures:
            self._newest = pictures[-1]
        if self._tick_due(arrival.arrived) and arrival.live and self._newest is not None:
            picture, self._newest = self._newest, None
            return self._sampled(picture, arrival, DecodeMode.ALL)
        return None

    def _hold(self, arrival: Arrival) -> None:
        if arrival.keyframe:
            # Older packets only lead to older pictures: drop them and start the
            # decoder afresh from this keyframe when a picture is next needed.
            self._held = [arrival.packet]
            self._decodable = True
            self._needs_reset = True
            return
        if arrival.after_gap:
            self._held, self._decodable = [], False  # a hole in the chain: wait for a keyframe
        if not self._decodable:
            return  # no keyframe yet: nothing here can be decoded
        self._held.append(arrival.packet)
        if len(self._held) > MAX_HELD_PACKETS:  # a very long GOP: bound the memory
            if self.active_mode() is DecodeMode.KEYFRAME:
                self._held, self._decodable = [], False  # the next keyframe serves
            else:
                self._decode_held()

    def _decode_held(self) -> Any | None:
        # Held packets start with a keyframe exactly when the decoder is to be reset.
        from_keyframe = self._needs_reset
        if self._needs_reset:
            self.decoder.reset()
            self._needs_reset = False
        newest = None
        for i, packet in enumerate(self._held):
            pictures = self._feed(packet, from_keyframe and i == 0)
            if pictures:
                newest = pictures[-1]
        self._held = []  # the decoder is at the newest packet; carry on from there
        return newest

    def _decode_keyframe_alone(self, packet: Any) -> Any | None:
        self.decoder.reset()
        pictures = self._feed(packet, keyframe=True) + self.decoder.drain()
        # A drained decoder cannot continue: should the lazy path need pictures
        # from this GOP, it decodes again from this keyframe.
        self._held = [packet]
        self._needs_reset = True
        self._armed_for_keyframe = False
        return pictures[-1] if pictures else None

    # -- bookkeeping ---------------------------------------------------------
    def _feed(self, packet: Any, keyframe: bool = False) -> list[Any]:
        self.decodes += 1
        if self.observe_decode is None:
            return self.decoder.decode(packet)
        started = time.perf_counter()
        pictures = self.decoder.decode(packet)
        self.observe_decode(time.perf_counter() - started, keyframe)
        return pictures

    def _keyframe_deadline(self) -> float:
        """When to stop waiting for a keyframe to serve the due tick: a grace
        after the keyframe the last GOP predicts, or after the tick if later.
        Until a GOP has been measured, nothing predicts a keyframe: wait."""
        if self.gop is None or self._last_keyframe_arrived is None:
            return math.inf
        due = self.next_tick if self.next_tick is not None else self.started
        return max(due, self._last_keyframe_arrived + self.gop) + KEYFRAME_GRACE

    def _past_the_keyframe(self, pts_time: float | None) -> bool:
        """Whether a unit shows the keyframe awaited did not come at its time:
        its timestamp is past the one the GOP predicts. By arrival alone, a
        server that fell behind (the keyframe and the units after it all late)
        looked the same, and every worker of a fanned-out camera decoded a
        whole GOP at once, on a machine that was already behind."""
        if pts_time is None or self._last_keyframe_pts is None or self.gop is None:
            return True  # nothing to tell by: the deadline alone decides
        return pts_time >= self._last_keyframe_pts + self.gop + KEYFRAME_GRACE

    def _note_keyframe(self, pts_time: float | None, arrived: float) -> None:
        self._last_keyframe_arrived = arrived
        if pts_time is not None and self._last_keyframe_pts is not None:
            step = pts_time - self._last_keyframe_pts
            if step > 0:
                self.gop = step
        if pts_time is not None:
            self._last_keyframe_pts = pts_time

    def _tick_due(self, now: float, keyframe: bool = False) -> bool:
        # Only a keyframe is taken early: it is the one decode a sample costs in
        # keyframe mode; any other packet early would only cost more decoding.
        early = self.early if keyframe else 0.0
        return self.next_tick is None or now >= self.next_tick - early or self._armed_for_keyframe

    def _pictures_the_tick(self, arrival: Arrival) -> bool:
        """A keyframe that is not live may still be the due tick's own picture:
        delivered late (its server fell behind: one camera fanned out to many
        readers on a busy machine, a congested link) but at most STALE_AFTER,
        like a unit at pace, and an interval (less ``early``) newer than the last
        sample, so not a backlog's older picture. Waiting a GOP for the next
        keyframe would lose the tick, and serving it from the units held since
        the last keyframe would decode a whole GOP for an older picture."""
        return (
            arrival.keyframe
            and arrival.late is not None
            and arrival.late <= STALE_AFTER
            and arrival.pts_time is not None
            and self._last_sample_pts is not None
            and arrival.pts_time - self._last_sample_pts >= self.interval - self.early
        )

    def _sampled(self, picture: Any | None, arrival: Arrival, mode: DecodeMode) -> Any | None:
        if picture is None:
            return None  # decoder delay or a damaged packet: the next packet serves the tick
        now = arrival.arrived
        self._last_sample_pts = arrival.pts_time
        self.samples += 1
        self._armed_for_keyframe = False  # whatever served the tick, it is served
        # Fixed schedule; after a stall, or a keyframe so late that the next tick
        # is due already, restart it from now (which also puts the ticks where
        # the keyframes come).
        base = self.next_tick if self.next_tick is not None else now
        self.last_lag = max(0.0, now - base)
        self.next_tick = base + self.interval
        if self.next_tick - self.early <= now:
            self.next_tick = self._restarted(arrival, mode)
        return picture

    def _restarted(self, arrival: Arrival, mode: DecodeMode) -> float:
        """The next tick when the schedule restarts from this sample: an interval
        after the picture's own time, when it would have come had nothing
        delayed it (its arrival less its lateness), so that the next picture,
        on time, serves the next tick. From its arrival instead, the schedule
        took the delay on: the next keyframe on time came before its tick, and
        its sample was lost (53 of 60 at 128 streams: every worker busy with
        the same keyframe at once). Where only a keyframe serves a tick, each
        is a GOP on, so a tick due already cannot chase a backlog; in the
        other modes any live unit may, so there the delay is taken on."""
        now = arrival.arrived
        late = min(max(arrival.late or 0.0, 0.0), STALE_AFTER)
        on_time = now - late + self.interval
        if mode is DecodeMode.KEYFRAME:
            return max(on_time, now)
        return on_time if on_time - self.early > now else now + self.interval
