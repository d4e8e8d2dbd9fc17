"""The C receive loop stamps a unit with when its bytes became readable, not
with when the reading thread got a CPU to read them: woken at the same moment
as many busy processes on its CPU (as every worker of a fanned-out camera is
at each keyframe), the reader runs late, and the sampler must not take that
wait for a backlog (capture/sampling.py's liveness)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from streamgrid.capture import _rtp

from ..unit.test_rtp_receiver import Sender, key_unit

CPU = 0
BUSY = 24  # processes woken with the reader, on its CPU
BURN = 0.025  # seconds of CPU each burns when woken
FORCED = 0.015  # a read this late behind them shows the wait was forced
TRIALS = 8

HOG = f"""
import os, time
os.sched_setaffinity(0, {{{CPU}}})
while os.read(0, 1):
    end = time.perf_counter() + {BURN}
    while time.perf_counter() < end:
        pass
"""


@pytest.fixture
def busy() -> Iterator[int]:
    """The write end of a pipe: each byte wakes one of BUSY processes on CPU."""
    read_end, write_end = os.pipe()
    hogs = [subprocess.Popen([sys.executable, "-c", HOG], stdin=read_end) for _ in range(BUSY)]
    os.close(read_end)
    time.sleep(1.0)  # started and blocked on the pipe
    yield write_end
    os.close(write_end)  # EOF: they exit
    for hog in hogs:
        hog.wait(10)


def read_pinned(reader: _rtp.RtpReader, ready: threading.Event, got: list[float]) -> None:
    """One unit read on CPU (this thread only): its stamp, and when it came back."""
    os.sched_setaffinity(0, {CPU})
    ready.set()
    unit = reader.read(False, 10.0)
    assert unit is not None
    got += [unit[3], time.monotonic()]


def send_beside(busy: int, sender: Sender, units: list[bytes], sent: list[float]) -> None:
    """Wake the busy processes and send the units at once, from another CPU
    (the sender itself is not queued behind them)."""
    os.sched_setaffinity(0, {c for c in os.sched_getaffinity(0) if c != CPU} or {CPU})
    os.write(busy, b"x" * BUSY)  # they and the reader are woken together
    sender.send(*units)
    sent.append(time.monotonic())  # readable by now


def test_a_unit_read_late_behind_other_work_is_stamped_when_it_arrived(busy: int) -> None:
    ours, theirs = socket.socketpair()
    reader = _rtp.RtpReader(ours.fileno(), 0, 96, False, 10.0, b"")
    sender = Sender(theirs)
    results: list[tuple[float, float, float]] = []  # (sent, arrived, read back)
    for trial in range(TRIALS):
        got: list[float] = []
        sent: list[float] = []
        ready = threading.Event()
        reading = threading.Thread(target=read_pinned, args=(reader, ready, got))
        reading.start()
        ready.wait()
        time.sleep(0.05)  # blocked in poll()
        units = key_unit(sender, 90000 * (trial + 1)) + key_unit(sender, 90000 * (trial + 2))
        sending = threading.Thread(target=send_beside, args=(busy, sender, units, sent))
        sending.start()
        sending.join(10)
        reading.join(10)
        results.append((sent[0], got[0], got[1]))
        time.sleep(BUSY * BURN + 0.1)  # the others are done
        while reader.read(False, 0.01) is not None:
            pass
    late = [r for r in results if r[2] - r[0] >= FORCED]
    assert late, f"the reader never ran {FORCED} s late: {results}"  # the forcing worked
    for sent_at, arrived, read_back in late:
        assert arrived - sent_at < 0.005, (arrived - sent_at, read_back - sent_at)
    ours.close()
    theirs.close()
