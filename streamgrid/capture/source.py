"""VideoSource: decoded pictures from an RTSP camera, with bounded waits.

PyAV (FFmpeg) rather than OpenCV's VideoCapture: it hands over the Y plane
without colour conversion, exposes FFmpeg's errors by type (401, 404, refused,
timeout), and takes per-call open/read timeouts.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import av
import av.error
import numpy as np

from ..core.brightness import brightness_of_luma
from ..core.grid import Image
from ..core.urls import mask_secrets, url_secrets
from .sampling import Arrival, LivenessTracker

_LUMA_FIRST = ("yuv", "yuvj", "nv12", "nv21", "gray")


class SourceError(RuntimeError):
    """The camera could not be read; worth retrying."""


class SourceFatalError(SourceError):
    """Retrying will not help (credentials refused, forbidden)."""


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


def _describe(exc: BaseException, url: str, waited: float = 0.0, limit: float = 0.0) -> str:
    text = mask_secrets(str(getattr(exc, "strerror", None) or exc), url_secrets(url))
    # FFmpeg reports its own deadline as "Immediate exit requested" and a socket
    # timeout inside RTSP as "Invalid data"; say what happened.
    if isinstance(exc, av.error.ExitError) or (limit and waited >= 0.9 * limit):
        return f"timed out after {waited:.1f} s ({text})"
    return text


class VideoSource:
    """Context manager over one connection; iterate ``pictures(stop)``."""

    def __init__(
        self,
        url: str,
        *,
        transport: str = "tcp",
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        decode_threads: int = 1,
        probe_seconds: float = 0.5,
    ) -> None:
        self.url = url
        self.transport = transport
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.decode_threads = decode_threads
        self.probe_seconds = probe_seconds
        self.container: av.container.InputContainer | None = None

    def __enter__(self) -> VideoSource:
        options = {
            "rtsp_transport": self.transport,
            # Socket-level timeout (microseconds), on top of PyAV's own deadline.
            "timeout": str(int(self.read_timeout * 1_000_000)),
            "allowed_media_types": "video",
            # FFmpeg buffers what it probes; a short probe means a fast start.
            "analyzeduration": str(int(self.probe_seconds * 1_000_000)),
        }
        started = time.monotonic()
        try:
            self.container = av.open(
                self.url, options=options, timeout=(self.open_timeout, self.read_timeout)
            )
        except (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError) as exc:
            raise SourceFatalError(_describe(exc, self.url)) from None
        except (av.error.FFmpegError, OSError) as exc:
            waited = time.monotonic() - started
            limit = min(self.open_timeout, self.read_timeout)
            raise SourceError(_describe(exc, self.url, waited, limit)) from None
        if not self.container.streams.video:
            self.container.close()
            raise SourceFatalError("the source has no video stream")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.container is not None:
            with contextlib.suppress(av.error.FFmpegError, OSError):
                self.container.close()
            self.container = None

    def codec_name(self) -> str:
        assert self.container is not None
        return str(self.container.streams.video[0].codec_context.name)

    def decoder(self) -> PyAVDecoder:
        assert self.container is not None
        context = self.container.streams.video[0].codec_context
        context.thread_count = self.decode_threads
        return PyAVDecoder(context)

    def arrivals(self, stop: threading.Event) -> Iterator[Arrival]:
        """Every video packet as it arrives, until ``stop`` or an error.

        Raises SourceError on a read timeout or when the stream ends.
        """
        assert self.container is not None
        stream = self.container.streams.video[0]
        # A float once: Fraction arithmetic on every packet is measurable.
        time_base = float(stream.time_base) if stream.time_base is not None else None
        liveness = LivenessTracker()
        last = time.monotonic()
        try:
            for packet in self.container.demux(stream):
                if stop.is_set():
                    return
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                last = time.monotonic()
                pts = None
                if packet.pts is not None and time_base is not None:
                    pts = packet.pts * time_base
                yield Arrival(packet, packet.is_keyframe, pts, last, liveness.observe(pts, last))
        except (av.error.FFmpegError, OSError) as exc:
            waited = time.monotonic() - last
            raise SourceError(_describe(exc, self.url, waited, self.read_timeout)) from None
        raise SourceError("the stream ended")
