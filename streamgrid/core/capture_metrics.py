"""A capture worker's numbers (docs/metrics.md), their metric families and
the Prometheus text format, without prometheus_client (it costs a process
2 to 8 MB of private memory; a capture pod's budget is 25 MB in all).

The capture loop bumps plain ints and floats (no locks, no Prometheus
objects, nothing per skipped packet). ``worker_families`` names and
describes them once: a capture pod renders those with ``exposition``
(capture/metrics.py), the embedded gateway hands the same families to its
prometheus_client registry (core/worker_metrics.py, WorkerCollector), so the
names and labels are the same.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# Seconds: a decode or a JPEG encode takes milliseconds (4K H.265 tens of them).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Seconds a sample came after its tick: up to a GOP in keyframe mode.
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
# Why a connection ended and was tried again: a fixed set, so a camera's own
# words never become a label (bounded cardinality).
RECONNECT_REASONS = ("refused", "timeout", "eof", "no_picture", "error")


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


Snapshots = Callable[[], Mapping[str, WorkerMetrics]]
Labels = tuple[tuple[str, str], ...]  # (name, value) pairs


@dataclass(frozen=True)
class Family:
    """A metric family as prometheus_client names it: a counter's name
    without ``_total``. ``points``: each label set with its value (a number,
    or a Histogram's cumulative buckets and sum)."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    points: list[tuple[Labels, float | Histogram]]


def worker_families(snapshots: Mapping[str, WorkerMetrics]) -> list[Family]:
    """Every stream's worker numbers (stream id -> its WorkerMetrics),
    labelled by stream id."""

    def counter(name: str, doc: str, value: Callable[[WorkerMetrics], int]) -> Family:
        points: list[tuple[Labels, float | Histogram]] = [
            ((("stream_id", sid),), float(value(m))) for sid, m in snapshots.items()
        ]
        return Family(f"streamgrid_capture_{name}", "counter", doc, points)

    def histogram(name: str, doc: str, value: Callable[[WorkerMetrics], Histogram]) -> Family:
        points: list[tuple[Labels, float | Histogram]] = [
            ((("stream_id", sid),), value(m)) for sid, m in snapshots.items()
        ]
        return Family(f"streamgrid_capture_{name}", "histogram", doc, points)

    reconnects: list[tuple[Labels, float | Histogram]] = [
        ((("stream_id", sid), ("reason", reason)), float(m.reconnects[reason]))
        for sid, m in snapshots.items()
        for reason in RECONNECT_REASONS
    ]
    return [
        counter("samples", "Samples taken (pictures scored).", lambda m: m.samples),
        counter("decodes", "Packets fed to the decoder.", lambda m: m.decodes),
        counter(
            "keyframes_decoded", "Keyframes fed to the decoder.", lambda m: m.keyframes_decoded
        ),
        counter(
            "packets_received",
            "Video packets (access units) received, skipped ones included.",
            lambda m: m.packets_received,
        ),
        counter(
            "packets_dropped",
            "Access units dropped as incomplete (lost RTP packets; our RTSP client only).",
            lambda m: m.packets_dropped,
        ),
        counter(
            "bytes_received",
            "Bytes received from the camera (TCP for our RTSP client; else video packets seen).",
            lambda m: m.bytes_received,
        ),
        Family(
            "streamgrid_capture_reconnects",
            "counter",
            "Connections lost or refused and tried again, by reason.",
            reconnects,
        ),
        histogram("decode_seconds", "Time to decode one packet.", lambda m: m.decode_seconds),
        histogram(
            "jpeg_encode_seconds",
            "Time to convert and JPEG-encode a picture that entered the top K.",
            lambda m: m.jpeg_seconds,
        ),
        histogram(
            "sample_lag_seconds",
            "How long after its tick a sample was taken.",
            lambda m: m.sample_lag_seconds,
        ),
    ]


# -- the text format (version 0.0.4), as prometheus_client writes it ----------
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def go_float(value: float) -> str:
    """A sample's value as Prometheus (Go) spells it: +Inf, NaN, 1.5e+07."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _label_text(labels: Labels) -> str:
    if not labels:
        return ""
    escaped = (
        (name, value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"'))
        for name, value in sorted(labels)
    )
    return "{" + ",".join(f'{name}="{value}"' for name, value in escaped) + "}"


def exposition(families: Iterable[Family]) -> bytes:
    """The text a scrape of these families gets."""
    lines: list[str] = []
    for family in families:
        name = family.name + ("_total" if family.kind == "counter" else "")
        doc = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines += [f"# HELP {name} {doc}", f"# TYPE {name} {family.kind}"]
        for labels, value in family.points:
            if not isinstance(value, Histogram):
                lines.append(f"{name}{_label_text(labels)} {go_float(value)}")
                continue
            buckets = value.cumulative()
            for bound, count in buckets:
                bucket = _label_text((*labels, ("le", bound)))
                lines.append(f"{name}_bucket{bucket} {go_float(count)}")
            lines.append(f"{name}_count{_label_text(labels)} {go_float(buckets[-1][1])}")
            lines.append(f"{name}_sum{_label_text(labels)} {go_float(value.total)}")
    return ("\n".join(lines) + "\n").encode()
