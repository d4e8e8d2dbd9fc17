"""Demux loops for `python -m bench --attribute`: where a worker's CPU goes.

`pyav`: PyAV's container.demux(), an empty loop body.
`pyav-keyframe`: the same, plus one keyframe decoded per interval, its Y mean taken.
`ctypes`: av_read_frame of the libavformat PyAV bundles, called from Python
through ctypes: the same library as `pyav`, one return to Python per packet,
and nothing else in the loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time
from pathlib import Path

import av
import numpy as np

OPTIONS = {"rtsp_transport": "tcp", "allowed_media_types": "video"}


def pyav_loop(url: str, interval: float, decode: bool) -> None:
    container = av.open(url, options=OPTIONS)
    stream = container.streams.video[0]
    context = stream.codec_context
    context.thread_count = 1
    next_tick = time.monotonic() + interval
    for packet in container.demux(stream):
        if decode and packet.is_keyframe and time.monotonic() >= next_tick:
            for frame in context.decode(packet):
                float(np.frombuffer(memoryview(frame.planes[0]), dtype=np.uint8).mean())
            next_tick += interval


class AVPacketHead(ctypes.Structure):
    # AVPacket's leading fields, in this order since FFmpeg 5.0.
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("pts", ctypes.c_int64),
        ("dts", ctypes.c_int64),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_int),
        ("stream_index", ctypes.c_int),
        ("flags", ctypes.c_int),
    ]


def _library(name: str) -> ctypes.CDLL:
    """PyAV's bundled copy (a wheel's av.libs), else the system's."""
    bundled = sorted((Path(av.__file__).parent.parent / "av.libs").glob(f"lib{name}-*.so*"))
    path = str(bundled[0]) if bundled else ctypes.util.find_library(name)
    if path is None:
        raise SystemExit(f"lib{name} not found")
    return ctypes.CDLL(path)


def ctypes_loop(url: str) -> None:
    avformat, avcodec, avutil = _library("avformat"), _library("avcodec"), _library("avutil")
    pointer = ctypes.POINTER(ctypes.c_void_p)
    avformat.avformat_open_input.argtypes = [pointer, ctypes.c_char_p, ctypes.c_void_p, pointer]
    avformat.avformat_find_stream_info.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    avformat.av_read_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(AVPacketHead)]
    avcodec.av_packet_alloc.restype = ctypes.POINTER(AVPacketHead)
    avcodec.av_packet_unref.argtypes = [ctypes.POINTER(AVPacketHead)]
    avutil.av_dict_set.argtypes = [pointer, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    options, context = ctypes.c_void_p(), ctypes.c_void_p()
    for key, value in OPTIONS.items():
        avutil.av_dict_set(ctypes.byref(options), key.encode(), value.encode(), 0)
    if avformat.avformat_open_input(
        ctypes.byref(context), url.encode(), None, ctypes.byref(options)
    ):
        raise SystemExit("cannot open")
    avformat.avformat_find_stream_info(context, None)
    packet = avcodec.av_packet_alloc()
    read, unref = avformat.av_read_frame, avcodec.av_packet_unref
    while read(context, packet) >= 0:
        head = packet.contents
        _ = (head.flags & 1, head.pts, time.monotonic())  # what a sampler reads
        unref(packet)


def main() -> int:
    url, how, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
    if how == "ctypes":
        ctypes_loop(url)
    else:
        pyav_loop(url, interval, decode=how == "pyav-keyframe")
    return 0


if __name__ == "__main__":
    sys.exit(main())
