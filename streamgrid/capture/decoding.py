"""Picture and PyAVDecoder: packets decoded with PyAV, and a picture's score.

Whichever way the packets come in (source.py: our RTSP client, FFmpeg's demux
in C, or PyAV's), they are decoded here, and a picture is scored from its Y
plane without colour conversion; only a picture kept is converted to BGR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import av
import av.error
import numpy as np

from ..core.brightness import brightness_of_luma
from ..core.grid import Image

_LUMA_FIRST = ("yuv", "yuvj", "nv12", "nv21", "gray")


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
            plane = frame.planes[0]
            data = np.frombuffer(memoryview(plane), dtype=np.uint8)
            luma = data.reshape(-1, plane.line_size)[: frame.height, : frame.width]
            full = frame.color_range == 2 or name.startswith("yuvj") or name == "gray"
            return brightness_of_luma(luma, full_range=full)
        gray = np.asarray(frame.to_ndarray(format="gray"), dtype=np.uint8)  # rare formats
        return brightness_of_luma(gray, full_range=True)

    def to_bgr(self) -> Image:
        return np.asarray(self.frame.to_ndarray(format="bgr24"), dtype=np.uint8)


class PyAVDecoder:
    """The Decoder protocol over one PyAV codec context."""

    def __init__(self, codec_context: Any) -> None:
        self.codec_context = codec_context

    def decode(self, packet: Any) -> list[Any]:
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
        return frames

    def reset(self) -> None:
        self.codec_context.flush_buffers()
