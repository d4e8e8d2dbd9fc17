"""A capture worker's own numbers, for Prometheus (docs/metrics.md).

The capture loop bumps plain ints and floats (no locks, no Prometheus objects,
nothing per skipped packet): the C reader counts units itself, and the
kernel counts a TCP connection's bytes. Prometheus sees them two ways:

- a capture pod serves them at ``/metrics`` on its health port (health.py);
- an embedded worker sends a snapshot (``WorkerMetrics.to_json``) in its JSON
  progress lines, at most once a second, and the gateway serves every
  stream's, labelled by stream id (gateway/metrics.py).

Both come from ``worker_families`` (core/capture_metrics.py), so the names and
labels are the same. A pod renders its own text (prometheus_client would cost
it megabytes of private memory), and the process's numbers beside it, as
prometheus_client's ProcessCollector names them.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from ..core.capture_metrics import (
    CONTENT_TYPE,
    Family,
    WorkerMetrics,
    exposition,
    worker_families,
)
from .source import VideoSource

# How often an embedded worker puts its numbers into a progress line.
REPORT_EVERY = 1.0


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


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def process_families() -> list[Family]:
    """The process's CPU seconds, memory, start time and file descriptors,
    from /proc; none where /proc cannot tell."""
    try:
        fields = Path("/proc/self/stat").read_bytes().rsplit(b")", 1)[-1].split()
        ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
        open_fds = len(os.listdir("/proc/self/fd"))
        max_fds = next(
            float(line.split()[3])
            for line in Path("/proc/self/limits").read_text().splitlines()
            if line.startswith("Max open files")
        )
        boot = _boot_time()
    except (OSError, StopIteration, ValueError, IndexError):
        return []

    def gauge(name: str, doc: str, value: float) -> Family:
        return Family(name, "gauge", doc, [((), value)])

    # After the ")" of comm: utime, stime at 11, 12; starttime, vsize, rss at 19..21.
    return [
        gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", float(fields[20])),
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            float(fields[21]) * page,
        ),
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            boot + float(fields[19]) / ticks,
        ),
        Family(
            "process_cpu_seconds",
            "counter",
            "Total user and system CPU time spent in seconds.",
            [((), (float(fields[11]) + float(fields[12])) / ticks)],
        ),
        gauge("process_open_fds", "Number of open file descriptors.", float(open_fds)),
        gauge("process_max_fds", "Maximum number of open file descriptors.", max_fds),
    ]


def worker_exposition(stream_id: str, metrics: WorkerMetrics) -> Callable[[], tuple[bytes, str]]:
    """A capture pod's ``/metrics``: its stream's numbers and the process's
    own (CPU seconds, memory, open files)."""
    return lambda: (
        exposition([*worker_families({stream_id: metrics}), *process_families()]),
        CONTENT_TYPE,
    )
