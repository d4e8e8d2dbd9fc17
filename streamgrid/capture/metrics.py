"""A capture worker's own numbers, for Prometheus (docs/metrics.md).

The capture loop bumps plain ints and floats (no locks, no Prometheus objects,
nothing per skipped packet): the C reader counts units itself, and the
kernel counts a TCP connection's bytes. Prometheus sees them two ways:

- a capture pod serves them at ``/metrics`` on its health port (health.py);
- an embedded worker sends a snapshot (``WorkerMetrics.to_json``) in its JSON
  progress lines, at most once a second, and the gateway serves every
  stream's, labelled by stream id (gateway/metrics.py).

Both go through ``WorkerCollector``, so the names and labels are the same.
"""

from __future__ import annotations

import socket
import struct
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector
from prometheus_client import generate_latest as exposition_of
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .source import VideoSource

# Seconds: a decode or a JPEG encode takes milliseconds (4K H.265 tens of them).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Seconds a sample came after its tick: up to a GOP in keyframe mode.
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
# Why a connection ended and was tried again: a fixed set, so a camera's own
# words never become a label (bounded cardinality).
RECONNECT_REASONS = ("refused", "timeout", "eof", "no_picture", "error")
# How often an embedded worker puts its numbers into a progress line.
REPORT_EVERY = 1.0


def reconnect_reason(text: str) -> str:
    """One of RECONNECT_REASONS for a SourceError's message."""
    lowered = text.lower()
    if "refused" in lowered:
        return "refused"
    if "no picture decoded" in lowered:
        return "no_picture"
    if "timed out" in lowered or "timeout" in lowered:
        return "timeout"
    if "stream ended" in lowered or "end of file" in lowered:
        return "eof"
    return "error"


class Histogram:
    """Fixed buckets in plain Python: ``counts[i]`` observations in bucket i
    (the last one: above every bound), and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: a value on a bound is in it
        self.total += value

    def add(self, other: Histogram) -> None:
        if other.bounds != self.bounds:
            raise ValueError("histograms with different buckets")
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: (upper bound, observations at or under it)."""
        running, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return buckets

    def to_json(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.total}

    @classmethod
    def from_json(cls, bounds: tuple[float, ...], data: Any) -> Histogram:
        """ValueError unless ``data`` is what to_json gives for these bounds."""
        histogram = cls(bounds)
        if not isinstance(data, dict):
            raise ValueError("a histogram is an object")
        counts, total = data.get("counts"), data.get("sum")
        if not isinstance(counts, list) or len(counts) != len(histogram.counts):
            raise ValueError("a histogram's counts do not match its buckets")
        histogram.counts = [_count(c) for c in counts]
        histogram.total = _number(total)
        return histogram


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("a count is a non-negative integer")
    return value


def _number(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ValueError("a sum is a non-negative number")
    return float(value)


COUNTERS = ("samples", "decodes", "keyframes_decoded")
LINK_COUNTERS = ("packets_received", "packets_dropped", "bytes_received")


@dataclass
class WorkerMetrics:
    """Everything a worker counts since it started (one process)."""

    samples: int = 0
    decodes: int = 0  # packets fed to the decoder
    keyframes_decoded: int = 0
    reconnects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECONNECT_REASONS, 0))
    decode_seconds: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    jpeg_seconds: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    sample_lag_seconds: Histogram = field(default_factory=lambda: Histogram(LAG_BUCKETS))
    # Connections that ended, and the one open now (as last read): packets,
    # packets dropped, bytes. Their sums are what is exposed.
    closed_link: tuple[int, int, int] = (0, 0, 0)
    live_link: tuple[int, int, int] = (0, 0, 0)

    @property
    def packets_received(self) -> int:
        return self.closed_link[0] + self.live_link[0]

    @property
    def packets_dropped(self) -> int:
        return self.closed_link[1] + self.live_link[1]

    @property
    def bytes_received(self) -> int:
        return self.closed_link[2] + self.live_link[2]

    def observe_decode(self, seconds: float, keyframe: bool) -> None:
        """TickSampler's hook: one packet decoded."""
        self.decodes += 1
        self.keyframes_decoded += keyframe
        self.decode_seconds.observe(seconds)

    def reconnected(self, reason_text: str) -> None:
        self.reconnects[reconnect_reason(reason_text)] += 1

    def link_read(self, packets: int, dropped: int, nbytes: int) -> None:
        """The open connection's counts so far (they only grow)."""
        self.live_link = (packets, dropped, nbytes)

    def link_closed(self) -> None:
        self.closed_link = (
            self.packets_received,
            self.packets_dropped,
            self.bytes_received,
        )
        self.live_link = (0, 0, 0)

    def add(self, other: WorkerMetrics) -> None:
        """Adds another worker's totals (the gateway: a respawned worker's
        predecessors), so that the stream's counters never go back."""
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason in RECONNECT_REASONS:
            self.reconnects[reason] += other.reconnects[reason]
        self.decode_seconds.add(other.decode_seconds)
        self.jpeg_seconds.add(other.jpeg_seconds)
        self.sample_lag_seconds.add(other.sample_lag_seconds)
        self.closed_link = (
            self.packets_received + other.packets_received,
            self.packets_dropped + other.packets_dropped,
            self.bytes_received + other.bytes_received,
        )
        self.live_link = (0, 0, 0)

    def to_json(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in COUNTERS},
            **{name: getattr(self, name) for name in LINK_COUNTERS},
            "reconnects": dict(self.reconnects),
            "decode_seconds": self.decode_seconds.to_json(),
            "jpeg_seconds": self.jpeg_seconds.to_json(),
            "sample_lag_seconds": self.sample_lag_seconds.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> WorkerMetrics:
        """A worker's snapshot as the gateway reads it; ValueError for anything
        else (a worker is our own code, but its pipe is not a contract)."""
        if not isinstance(data, dict):
            raise ValueError("metrics are an object")
        metrics = cls()
        for name in COUNTERS:
            setattr(metrics, name, _count(data.get(name, 0)))
        metrics.closed_link = (
            _count(data.get("packets_received", 0)),
            _count(data.get("packets_dropped", 0)),
            _count(data.get("bytes_received", 0)),
        )
        reconnects = data.get("reconnects", {})
        if not isinstance(reconnects, dict):
            raise ValueError("reconnects are an object")
        for reason in RECONNECT_REASONS:  # others are ignored: the label set stays fixed
            metrics.reconnects[reason] = _count(reconnects.get(reason, 0))
        get = data.get
        metrics.decode_seconds = Histogram.from_json(DURATION_BUCKETS, get("decode_seconds"))
        metrics.jpeg_seconds = Histogram.from_json(DURATION_BUCKETS, get("jpeg_seconds"))
        metrics.sample_lag_seconds = Histogram.from_json(LAG_BUCKETS, get("sample_lag_seconds"))
        return metrics


# struct tcp_info (linux/tcp.h): tcpi_bytes_received, a u64 at this offset
# (Linux 4.1 and later; an older kernel returns a shorter struct).
_TCPI_BYTES_RECEIVED = 128
_TCP_INFO_SIZE = 256


def tcp_bytes_received(sock: socket.socket) -> int | None:
    """Bytes the kernel received on a TCP connection (its payload: RTSP, RTP
    and their framing), or None where the kernel does not say."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except (OSError, AttributeError):
        return None
    if len(info) < _TCPI_BYTES_RECEIVED + 8:
        return None
    return int(struct.unpack_from("=Q", info, _TCPI_BYTES_RECEIVED)[0])


class LinkCounts:
    """One connection's packets, drops and bytes. The C reader (``rtp``) counts
    the units it skips and drops; the packets handed over are the arrivals the
    loop sees (``seen``). Bytes: the kernel's count of the TCP connection for
    our RTSP client; else (PyAV's demux) the video packets Python sees."""

    def __init__(self, source: VideoSource) -> None:
        self.source = source
        self.arrivals = 0
        self.payload_bytes = 0
        self._last_bytes = 0
        packets = source.native
        sock = packets.session.sock if packets is not None else None
        # The kernel's count where it gives one (checked once), else Python's.
        self._sock = sock if sock is not None and tcp_bytes_received(sock) is not None else None
        self.counts_payload = self._sock is None

    def seen(self, packet_size: int) -> None:
        """A packet handed to Python (each one the capture loop gets)."""
        self.arrivals += 1
        if self.counts_payload:
            self.payload_bytes += packet_size

    def read(self) -> tuple[int, int, int]:
        """(packets received, packets dropped, bytes received) so far."""
        packets, skipped, dropped = self.source.native, 0, 0
        if packets is not None:
            _, skipped, dropped, _ = packets.counts
        nbytes = self.payload_bytes
        if self._sock is not None:
            nbytes = tcp_bytes_received(self._sock) or self._last_bytes  # closed: the last count
        self._last_bytes = nbytes
        return self.arrivals + skipped, dropped, nbytes


Snapshots = Callable[[], Mapping[str, WorkerMetrics]]


class WorkerCollector(Collector):
    """Every stream's worker numbers, labelled by stream id, read at scrape
    time from ``snapshots()`` (stream id -> its WorkerMetrics)."""

    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        snapshots = dict(self.snapshots())
        label = ["stream_id"]

        def counter(name: str, doc: str, value: Callable[[WorkerMetrics], int]) -> Metric:
            family = CounterMetricFamily(f"streamgrid_capture_{name}", doc, labels=label)
            for stream_id, metrics in snapshots.items():
                family.add_metric([stream_id], float(value(metrics)))
            return family

        def histogram(name: str, doc: str, value: Callable[[WorkerMetrics], Histogram]) -> Metric:
            family = HistogramMetricFamily(f"streamgrid_capture_{name}", doc, labels=label)
            for stream_id, metrics in snapshots.items():
                h = value(metrics)
                family.add_metric([stream_id], h.cumulative(), h.total)
            return family

        yield counter("samples", "Samples taken (pictures scored).", lambda m: m.samples)
        yield counter("decodes", "Packets fed to the decoder.", lambda m: m.decodes)
        yield counter(
            "keyframes_decoded", "Keyframes fed to the decoder.", lambda m: m.keyframes_decoded
        )
        yield counter(
            "packets_received",
            "Video packets (access units) received, skipped ones included.",
            lambda m: m.packets_received,
        )
        yield counter(
            "packets_dropped",
            "Access units dropped as incomplete (lost RTP packets; our RTSP client only).",
            lambda m: m.packets_dropped,
        )
        yield counter(
            "bytes_received",
            "Bytes received from the camera (TCP for our RTSP client; else video packets seen).",
            lambda m: m.bytes_received,
        )
        reconnects = CounterMetricFamily(
            "streamgrid_capture_reconnects",
            "Connections lost or refused and tried again, by reason.",
            labels=["stream_id", "reason"],
        )
        for stream_id, metrics in snapshots.items():
            for reason in RECONNECT_REASONS:
                reconnects.add_metric([stream_id, reason], float(metrics.reconnects[reason]))
        yield reconnects
        yield histogram("decode_seconds", "Time to decode one packet.", lambda m: m.decode_seconds)
        yield histogram(
            "jpeg_encode_seconds",
            "Time to convert and JPEG-encode a picture that entered the top K.",
            lambda m: m.jpeg_seconds,
        )
        yield histogram(
            "sample_lag_seconds",
            "How long after its tick a sample was taken.",
            lambda m: m.sample_lag_seconds,
        )


class Throttle:
    """True at most once per ``every`` seconds (monotonic)."""

    def __init__(self, every: float = REPORT_EVERY) -> None:
        self.every = every
        self._last = -float("inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.every:
            return False
        self._last = now
        return True


def worker_exposition(stream_id: str, metrics: WorkerMetrics) -> Callable[[], tuple[bytes, str]]:
    """A capture pod's ``/metrics``: its stream's numbers and the process's
    own (CPU seconds, memory, open files), on a registry of its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(lambda: {stream_id: metrics}))
    ProcessCollector(registry=registry)
    return lambda: (exposition_of(registry), CONTENT_TYPE_LATEST)
