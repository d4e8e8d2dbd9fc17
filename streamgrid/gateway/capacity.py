"""How many streams this machine holds, measured at start: the embedded
runtime's stream cap when ``STREAMGRID_MAX_STREAMS`` is not set.

Its CPUs (those this process may run on, within a cgroup's CPU quota) at the
streams a core keeps up with, and its memory (available at start, within a
cgroup's limit, less the server's own) at what a stream costs; the lesser of
the two. Both rates are the density benchmark's (docs/benchmarks.md,
``python -m bench --density``: a 720p25 H.264 camera sampled every second).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

STREAMS_PER_CORE = 64  # every stream at 58 of 60 samples or more, 128 on 2 cores
MB_PER_STREAM = 16  # the serve tree's PSS per extra stream, workers forked
SERVER_MB = 200  # the server itself, and room to compose grids


@dataclass(frozen=True)
class Capacity:
    cores: float
    memory_mb: float

    @property
    def by_cpu(self) -> int:
        return max(1, math.floor(self.cores * STREAMS_PER_CORE))

    @property
    def by_memory(self) -> int:
        return max(1, math.floor((self.memory_mb - SERVER_MB) / MB_PER_STREAM))

    def streams(self) -> int:
        return min(self.by_cpu, self.by_memory, 100_000)

    def reason(self) -> str:
        """Why the cap is what it is, for /start's 429 after "the limit is N"."""
        return (
            f"what this machine holds: {self.cores:g} CPU cores at {STREAMS_PER_CORE} streams "
            f"each ({self.by_cpu}), {self.memory_mb / 1024:.1f} GB of memory free at start at "
            f"{MB_PER_STREAM} MB each ({self.by_memory}); STREAMGRID_MAX_STREAMS sets another"
        )


def measure(root: Path = Path("/")) -> Capacity:
    return Capacity(usable_cores(root), available_memory_mb(root))


def usable_cores(root: Path = Path("/")) -> float:
    cores = float(len(os.sched_getaffinity(0)))
    quota = (_cgroup_file(root, "cpu.max") or "max").split()  # "200000 100000": 2 CPUs
    if len(quota) == 2 and quota[0].isdigit() and quota[1].isdigit() and int(quota[1]):
        cores = min(cores, int(quota[0]) / int(quota[1]))
    return cores


def available_memory_mb(root: Path = Path("/")) -> float:
    available = 0.0
    for line in (root / "proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) / 1024
    limit, used = _cgroup_file(root, "memory.max"), _cgroup_file(root, "memory.current")
    if limit is not None and limit.isdigit() and used is not None and used.isdigit():
        available = min(available, (int(limit) - int(used)) / 2**20)
    return available


def _cgroup_file(root: Path, name: str) -> str | None:
    """A file of this process's cgroup (v2, unified), if it has one."""
    try:
        for line in (root / "proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                path = root / "sys/fs/cgroup" / line[3:].lstrip("/") / name
                return path.read_text().strip()
    except OSError:
        pass
    return None
