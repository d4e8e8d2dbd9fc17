"""Picture and PyAVDecoder: packets decoded with PyAV, and a picture's score.

Whichever way the packets come in (source.py: our RTSP client, FFmpeg's demux
in C, or PyAV's), they are decoded here, and a picture is scored from its Y
plane without colour conversion (its bytes summed in C, _luma.c); only a
picture kept is converted, to RGB, and JPEG-encoded (core/imaging.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import av
import av.error
from PIL import Image

from ..core import imaging
from ..core.brightness import luma_to_full_range

_LUMA_FIRST = ("yuv", "yuvj", "nv12", "nv21", "gray")

_luma: ModuleType | None
try:  # compiled at install time: may be missing where no compiler was
    from . import _luma
except ImportError:
    _luma = None


def histogram_sum(data: Any, width: int, height: int, stride: int) -> int:
    """The sum of ``height`` rows of ``width`` bytes, ``stride`` apart, from
    Pillow's histogram: exact, several times slower than _luma's loop."""
    plane = Image.frombuffer("L", (width, height), data, "raw", "L", stride, 1)
    return sum(value * count for value, count in enumerate(plane.histogram()))


def plane_sum(data: Any, width: int, height: int, stride: int) -> int:
    """The sum of ``height`` rows of ``width`` bytes, ``stride`` apart."""
    if _luma is not None:
        return int(_luma.plane_sum(data, width, height, stride))
    return histogram_sum(data, width, height, stride)


def plane_mean(plane: Any, width: int, height: int) -> float:
    """The mean of a picture's plane (a PyAV VideoPlane, rows padded to its
    line size)."""
    return plane_sum(plane, width, height, plane.line_size) / (width * height)


@dataclass
class Picture:
    """A decoded picture: its score now, its pixels only if it is kept."""

    frame: av.VideoFrame

    @property
    def pts_time(self) -> float | None:
        t = self.frame.time
        return None if t is None else float(t)

    def brightness(self) -> float:
        frame = self.frame
        name = frame.format.name
        if name.startswith(_LUMA_FIRST) and "p10" not in name and "p12" not in name:
            full = frame.color_range == 2 or name.startswith("yuvj") or name == "gray"
            mean = plane_mean(frame.planes[0], frame.width, frame.height)
            return luma_to_full_range(mean, full_range=full)
        gray = frame.reformat(format="gray")  # rare formats
        return luma_to_full_range(plane_mean(gray.planes[0], gray.width, gray.height), True)

    def to_jpeg(self, quality: int) -> bytes:
        """The picture as a JPEG: converted to RGB (FFmpeg's swscale), encoded
        by libjpeg-turbo (Pillow)."""
        rgb = self.frame.reformat(format="rgb24")
        plane = rgb.planes[0]
        return imaging.encode_rgb(plane, rgb.width, rgb.height, plane.line_size, quality)


class PyAVDecoder:
    """The Decoder protocol over a PyAV codec context.

    A context's frame pool keeps as many pictures as it ever held at once:
    the first sample (decoded lazily, from a keyframe on) or any lazy tick
    leaves a 1080p pool at five pictures, 18 MB, for good, and even one
    picture is 3.4 MB at 1080p. So with ``fresh`` (how to make another such
    context), a drained decoder (keyframe mode drains after each keyframe
    and starts the next from nothing anyway) and one reset after more than a
    packet let the context go, and the next packet goes to a new one. The new
    pool is faulted in at each keyframe: 0.5 ms at 720p, 2.3 ms at 1080p on
    this machine.
    """

    def __init__(self, codec_context: Any, fresh: Callable[[], Any] | None = None) -> None:
        self._context: Any = codec_context
        self._fresh = fresh
        self._fed = 0  # packets decoded since the last reset

    @property
    def codec_context(self) -> Any:
        if self._context is None:
            assert self._fresh is not None
            self._context = self._fresh()
        return self._context

    @property
    def renewed(self) -> bool:
        """Whether the next packet goes to a new context."""
        return self._context is None

    def decode(self, packet: Any) -> list[Any]:
        self._fed += 1
        try:
            return list(self.codec_context.decode(packet))
        except av.error.InvalidDataError:
            return []  # a damaged packet: later ones (or the next keyframe) recover

    def drain(self) -> list[Any]:
        try:
            frames = list(self.codec_context.decode(None))
        except (av.error.EOFError, av.error.InvalidDataError):
            frames = []
        self.codec_context.flush_buffers()
        if self._fresh is not None:
            self._context = None  # its pool goes once the pictures drained here do
        return frames

    def reset(self) -> None:
        if self._fresh is not None and self._fed > 1:
            self._context = None  # its pool goes once the pictures it gave out do
        elif self._context is not None:
            self._context.flush_buffers()
        self._fed = 0
