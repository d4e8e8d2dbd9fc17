"""RtpPackets: a camera read through our own RTSP client (rtsp/) and the C
receive loop (``_rtp.c``); the cheapest way in for H.264 and H.265 over TCP.

``read()`` hands over the next access unit, or only the next key one, with
when it arrived and the unit before it.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from ..core.sources import SourcePolicy
from .rtsp.session import RtspSession
from .tls import TlsPolicy


@functools.cache
def unavailable() -> str | None:
    """None when the C receive loop is built, else why not (once per process)."""
    try:
        from . import _rtp  # noqa: F401 - compiled at install time
    except ImportError as exc:
        return f"the extension is not built ({exc})"
    return None


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One unit handed over by the C loop, with the unit before it."""

    packet: Any  # av.Packet
    pts: int | None
    keyframe: bool
    arrived: float  # monotonic seconds
    previous_arrived: float | None
    previous_pts: int | None
    # A unit since the last keyframe was lost or not kept: this one does not
    # decode from that keyframe.
    after_gap: bool = False


class RtpPackets:
    """One camera over RTSP/TCP. Not thread-safe, but for ``interrupt()``."""

    def __init__(
        self,
        url: str,
        open_timeout: float,
        read_timeout: float,
        tls: TlsPolicy | None = None,
        source_policy: SourcePolicy | None = None,
    ) -> None:
        from . import _rtp

        self._module = _rtp
        self.session = RtspSession(url, open_timeout, read_timeout, tls, source_policy)
        self.read_timeout = read_timeout
        self._reader: Any = None
        self.codec_name = ""
        self.extradata = b""
        self.time_base = Fraction(1, 90000)

    def open(self) -> None:
        """The RTSP conversation up to PLAY; raises Unsupported, NoVideo,
        RtspAuthError, RtspError (rtsp/errors.py), TimeoutError or OSError."""
        ahead = self.session.start()
        track = self.session.track
        sock = self.session.sock
        assert track is not None and sock is not None
        self.codec_name, self.extradata = track.codec, track.extradata
        self.time_base = Fraction(1, track.clock_rate)
        self._reader = self._module.RtpReader(
            sock.fileno(),
            self.session.channel,
            track.payload_type,
            track.codec == "hevc",
            self.read_timeout,
            ahead,
        )

    def read(self, keyframes_only: bool, max_wait: float) -> AccessUnit | None:
        """The next access unit (the next key one if ``keyframes_only``), or None
        when none came within ``max_wait`` or after ``interrupt()``. Raises
        EOFError when the camera hangs up, TimeoutError when it goes quiet for
        the read timeout, OSError otherwise."""
        if self.session.keepalive_due(time.monotonic()):
            self.session.send_keepalive()
        got = self._reader.read(keyframes_only, max_wait)
        if got is None:
            return None
        data, pts, keyframe, arrived, previous_arrived, previous_pts = got
        after_gap = not keyframe and self._reader.chain_broken
        packet = av.Packet(data)  # what a PyAV decoder takes
        packet.pts = packet.dts = pts
        packet.time_base = self.time_base
        packet.is_keyframe = keyframe
        return AccessUnit(packet, pts, keyframe, arrived, previous_arrived, previous_pts, after_gap)

    @property
    def recovers_skipped(self) -> bool:
        """Whether the C reader holds the units it skips in keyframe mode and
        hands them over when next asked for every unit (and flags the units
        after a unit it could not keep)."""
        return bool(self._module.HOLDS_SKIPPED)

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """(handed to Python, skipped as not key, dropped as incomplete, RTSP
        messages skipped)."""
        return (0, 0, 0, 0) if self._reader is None else self._reader.counts

    @property
    def last_answer(self) -> int:
        """The status of the last RTSP answer found among the data, a keep-alive's
        (0: none yet)."""
        return 0 if self._reader is None else int(self._reader.last_status)

    def interrupt(self) -> None:
        """From any thread: the read in progress returns None at once. In the
        handshake, the socket is shut down; once playing, it stays up so that
        close() can still say TEARDOWN."""
        reader = self._reader
        if reader is not None:
            reader.interrupt()
        else:
            self.session.interrupt()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self.session.close()
