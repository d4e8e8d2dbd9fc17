"""Decoding in the worker without NumPy or OpenCV: the luma sum in C
(capture/_luma.c) and its fallback are exact, the bytes and scores are what
the NumPy/OpenCV code gave for the same decoded frame, and a decoder's
context does not keep the pictures of a lazy decode for good."""

from __future__ import annotations

from typing import Any

import av
import cv2
import numpy as np
import pytest

from streamgrid.capture import _luma
from streamgrid.capture.decoding import Picture, PyAVDecoder, histogram_sum, plane_sum
from streamgrid.capture.sampling import Arrival, DecodeMode, TickSampler
from streamgrid.core.brightness import brightness_of_luma


@pytest.mark.parametrize(
    ("width", "height", "stride"), [(1281, 721, 1344), (64, 48, 64), (1, 1, 1)]
)
def test_the_sum_of_a_padded_plane_is_exact_both_ways(width: int, height: int, stride: int) -> None:
    rng = np.random.default_rng(width)
    padded = rng.integers(0, 256, size=(height, stride), dtype=np.uint8)
    exact = int(padded[:, :width].sum(dtype=np.uint64))
    data = padded.tobytes()
    assert _luma.plane_sum(data, width, height, stride) == exact
    assert histogram_sum(data, width, height, stride) == exact
    assert plane_sum(data, width, height, stride) == exact


def test_the_largest_sums_do_not_overflow() -> None:
    white = b"\xff" * (3840 * 2160)
    assert _luma.plane_sum(white, 3840, 2160, 3840) == 255 * 3840 * 2160
    assert _luma.plane_sum(b"", 0, 0, 0) == 0


@pytest.mark.parametrize(
    ("width", "height", "stride"),
    [(10, 2, 8), (8, 3, 8), (-1, 1, 8), (8, -1, 8), (8, 2, 2**62), (2**24, 1, 2**24)],
)
def test_rows_outside_the_buffer_are_refused(width: int, height: int, stride: int) -> None:
    with pytest.raises(ValueError, match="do not fit"):
        _luma.plane_sum(b"\0" * 16, width, height, stride)


def decoded_frame(level_at: int = 0) -> av.VideoFrame:
    """A real decoded H.264 picture (yuv420p, limited range, padded rows)."""
    rng = np.random.default_rng(level_at)
    rgb = rng.integers(0, 256, size=(72, 100, 3), dtype=np.uint8)
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 100, 72, "yuv420p"
    packets = list(encoder.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
    packets += list(encoder.encode(None))
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in packets for f in decoder.decode(p)]
    frames += list(decoder.decode(None))
    return frames[0]


def test_a_decoded_pictures_score_is_the_numpy_one() -> None:
    frame = decoded_frame()
    assert frame.planes[0].line_size > frame.width  # the padding is skipped
    plane = np.frombuffer(memoryview(frame.planes[0]), np.uint8)
    y = plane.reshape(-1, frame.planes[0].line_size)[: frame.height, : frame.width]
    assert Picture(frame).brightness() == brightness_of_luma(y, full_range=False)


def test_a_kept_pictures_jpeg_is_the_bytes_opencv_wrote() -> None:
    frame = decoded_frame(1)
    bgr = frame.to_ndarray(format="bgr24")
    ok, opencv = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok and Picture(frame).to_jpeg(85) == bytes(opencv)


def h264_packets(frames: int, gop: int) -> list[Any]:
    """A real H.264 stream (SPS/PPS before each keyframe): frame i is grey 10 * i."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 48, "yuv420p"
    encoder.gop_size, encoder.options = gop, {"bframes": "0", "keyint_min": str(gop)}
    packets: list[Any] = []
    for i in range(frames):
        gray = np.full((48, 64, 3), 10 * i, dtype=np.uint8)
        packets += encoder.encode(av.VideoFrame.from_ndarray(gray, format="rgb24"))
    return packets + list(encoder.encode(None))


def test_a_decoder_lets_its_context_go_after_a_lazy_decode_and_between_keyframes() -> None:
    """Its frame pool keeps as many pictures as it ever held at once: after a
    lazy decode (the first sample is one) the context is renewed, and in
    keyframe mode each keyframe gets a context of its own, gone once drained."""
    packets = h264_packets(frames=25, gop=5)
    made: list[Any] = []

    def fresh() -> Any:
        made.append(av.CodecContext.create("h264", "r"))
        return made[-1]

    decoder = PyAVDecoder(fresh(), fresh)
    sampler = TickSampler(decoder, 0.2, DecodeMode.AUTO, started=0.0)
    held, levels = [], []
    for i, packet in enumerate(packets):
        at = 0.1 + i * 0.04  # 25 fps from 0.1 s: the first tick is served lazily at frame 0..2
        picture = sampler.offer(Arrival(packet, packet.is_keyframe, at, at, live=True))
        if picture is not None:
            held.append(not decoder.renewed)
            levels.append(Picture(picture).brightness())
    assert sampler.samples >= 4 and levels == sorted(levels)  # newer, brighter pictures
    assert sampler.decodes > sampler.samples  # the first sample decoded several packets
    # The lazy sample's context went at the next reset; each keyframe had its own.
    assert held[0] and held[1:] == [False] * (len(held) - 1)
    assert len(made) == sampler.samples, (len(made), sampler.decodes, sampler.samples)


def test_a_decoder_without_a_way_to_renew_keeps_its_context() -> None:
    packets = h264_packets(frames=10, gop=5)
    context = av.CodecContext.create("h264", "r")
    decoder = PyAVDecoder(context)
    assert [f for p in packets[:3] for f in decoder.decode(p)]
    decoder.reset()
    assert not decoder.renewed and decoder.codec_context is context
    assert decoder.decode(packets[5]) + decoder.drain()
