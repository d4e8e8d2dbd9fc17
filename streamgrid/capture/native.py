"""The C demux loop (``_packets.c``) behind a typed face, and whether it can run.

At one sample per GOP, almost every packet is skipped; ``NativePackets`` skips
them in C, so Python runs once per wanted packet instead of once per packet.
It binds to the FFmpeg that PyAV loaded and checks that library's struct
layout first; ``unavailable()`` says why when it cannot, and the source falls
back to PyAV's demux.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

_LIBRARY = re.compile(r"(/\S*/libav(format|codec|util)\b[^/\s]*\.so[^/\s]*)$")
# AVERROR_STREAM_NOT_FOUND, FFERRTAG(0xF8, 'S', 'T', 'R'): av_find_best_stream found no video.
_STREAM_NOT_FOUND = -(0xF8 | ord("S") << 8 | ord("T") << 16 | ord("R") << 24)


class NoVideoStream(LookupError):
    """The source has no video stream."""


def loaded_ffmpeg() -> dict[str, str]:
    """Paths of the libavformat, libavcodec and libavutil this process has mapped
    (PyAV's: ``import av`` loads them)."""
    found: dict[str, str] = {}
    for line in Path("/proc/self/maps").read_text().splitlines():
        match = _LIBRARY.search(line)
        if match:
            found.setdefault(match.group(2), match.group(1))
    return found


@functools.cache
def unavailable() -> str | None:
    """None when the C demux loop can run here, else why not (once per process)."""
    try:  # compiled at install time: may be missing where no compiler was
        from . import _packets
    except ImportError as exc:
        return f"the extension is not built ({exc})"
    libraries = loaded_ffmpeg()
    missing = [name for name in ("format", "codec", "util") if name not in libraries]
    if missing:
        return "PyAV's FFmpeg libraries not found in /proc/self/maps: " + ", ".join(missing)
    try:
        _packets.load(libraries["format"], libraries["codec"], libraries["util"])
    except RuntimeError as exc:
        return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class NativePacket:
    """One packet handed over by the C loop, with the video packet before it."""

    packet: Any  # av.Packet
    pts: int | None
    keyframe: bool
    arrived: float  # monotonic seconds
    previous_arrived: float | None
    previous_pts: int | None
    # A unit since the last keyframe was lost or not kept: this one does not
    # decode from that keyframe (the rtp reader says; FFmpeg's loop cannot).
    after_gap: bool = False

    @classmethod
    def of(
        cls,
        data: Any,
        pts: int | None,
        dts: int | None,
        keyframe: bool,
        time_base: Fraction,
        arrived: float,
        previous_arrived: float | None,
        previous_pts: int | None,
        after_gap: bool = False,
    ) -> NativePacket:
        """``data`` (any buffer) as a PyAV packet that a decoder takes, with the rest."""
        packet = av.Packet(data)
        packet.pts, packet.dts = pts, dts
        packet.time_base = time_base
        packet.is_keyframe = keyframe
        return cls(packet, pts, keyframe, arrived, previous_arrived, previous_pts, after_gap)


class NativePackets:
    """One RTSP connection demuxed in C. Not thread-safe, but for ``interrupt()``."""

    def __init__(self) -> None:
        reason = unavailable()  # loads the extension's FFmpeg bindings, once
        if reason is not None:
            raise RuntimeError(f"the native demuxer cannot run here: {reason}")
        from . import _packets  # here, not above: unavailable() says whether it imports

        self._module = _packets
        self._reader = _packets.PacketReader()
        self.codec_name = ""
        self.extradata = b""
        self.time_base = Fraction(1, 90000)

    def open(
        self, url: str, options: dict[str, str], open_timeout: float, read_timeout: float
    ) -> None:
        """Connect and probe; raises PyAV's exception types (av.error.*)."""
        try:
            self._reader.open(url, options, open_timeout, read_timeout)
        except self._module.CallError as exc:
            if exc.args[0] == _STREAM_NOT_FOUND:
                raise NoVideoStream from None
            av.error.err_check(int(exc.args[0]))  # raises the matching av.error class
            raise  # not reached: err_check raises for any negative code
        self.codec_name, self.extradata, num, den = self._reader.stream()
        self.time_base = Fraction(num, den)

    def read(self, keyframes_only: bool, max_wait: float) -> NativePacket | None:
        """The next video packet (the next keyframe if ``keyframes_only``), or None
        when none came within ``max_wait`` or after ``interrupt()``."""
        try:
            got = self._reader.read(keyframes_only, max_wait)
        except self._module.CallError as exc:
            av.error.err_check(int(exc.args[0]))
            raise
        if got is None:
            return None
        data, pts, dts, keyframe, arrived, previous_arrived, previous_pts = got
        # A view without the zero padding the C side appended: FFmpeg's
        # decoders read a little past a packet's end.
        view = memoryview(data)[: len(data) - self._module.PADDING]
        return NativePacket.of(
            view, pts, dts, keyframe, self.time_base, arrived, previous_arrived, previous_pts
        )

    @property
    def counts(self) -> tuple[int, int]:
        """(packets handed to Python, packets skipped in C)."""
        return self._reader.counts

    def interrupt(self) -> None:
        self._reader.interrupt()

    def close(self) -> None:
        self._reader.close()
