"""CPU time and memory of a process, from /proc (Linux)."""

from __future__ import annotations

import os
from dataclasses import dataclass

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and its waited-for children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the ")" of comm: state is fields[0]; utime, stime, cutime, cstime at 11..14.
    return sum(int(v) for v in fields[11:15]) / TICK


def _status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory, shared library pages included."""
    return _status_mb(pid, "VmHWM")


def private_mb(pid: int) -> float:
    """Anonymous resident memory now: what each more process really adds.

    RSS also counts the shared libraries' file pages, and how many of those
    count depends on the page cache (a freshly installed virtualenv showed
    +33 MB of RssFile for the same imports), not on the process.
    """
    return _status_mb(pid, "RssAnon")


@dataclass
class CpuWindow:
    """CPU used between start() and stop(), as a percentage of one core."""

    pid: int
    _cpu: float = 0.0
    _wall: float = 0.0

    def start(self, now: float) -> None:
        self._cpu, self._wall = cpu_seconds(self.pid), now

    def percent(self, now: float) -> float:
        return 100.0 * (cpu_seconds(self.pid) - self._cpu) / max(1e-9, now - self._wall)
