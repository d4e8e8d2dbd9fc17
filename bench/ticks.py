"""Ticks served when the GOP equals the capture interval, on a server we did
not write (mediamtx), side by side.

The most common camera setting, 25 fps with a keyframe every 25 frames, at the
default interval of 1 s: every tick then has a keyframe within a few
milliseconds of it, and the keyframe path decides, by jitter, between a sample
now and one a GOP later (issue 11 measured 14 samples in 20 ticks). Each
contender is one worker reading the same published file for the same window;
the figures are the share of ticks with a sample, the longest gap between two
samples, and CPU. ``lazy`` decodes the packets up to each tick instead of one
keyframe: it serves every tick by construction, at a higher CPU cost, and is
the reference here.

mediamtx comes from tools/mediamtx/build.sh (``make interop-tools``); the
runner is the tests' (testbed/mediamtx.py).
"""

from __future__ import annotations

import itertools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .media import MediaSpec, generate
from .run import at_tree, our_worker, running

INTERVAL = 1.0
PATH = "pub-cam"


@dataclass
class TickResult:
    contender: str
    ticks: float
    samples: int
    longest_gap: float
    cpu: float

    @property
    def served(self) -> float:
        return min(1.0, self.samples / self.ticks) if self.ticks else 0.0


def contenders(url: str, work: Path, baseline: Path | None) -> dict[str, dict[str, str]]:
    """name -> the worker's environment."""
    auto = our_worker(url, INTERVAL, "auto", work, "ticks-auto")
    lazy = our_worker(url, INTERVAL, "lazy", work, "ticks-lazy")
    table = {
        "streamgrid (auto: rtp, keyframes)": auto,
        "streamgrid (lazy decode, reference)": lazy,
    }
    if baseline is not None:  # another checkout's worker, its extensions built in place
        before = our_worker(url, INTERVAL, "auto", work, "ticks-before")
        table[f"streamgrid at {baseline.name} (auto)"] = at_tree(before, baseline)

    return table


def run_ticks(
    cache: Path, window: float, warmup: float, short: bool, baseline: Path | None = None
) -> list[str]:
    """Markdown lines: the table, one row a contender. ``baseline``: a checkout
    of another revision, measured beside this one."""
    import sys

    from testbed.mediamtx import MediaMtx

    spec = MediaSpec(720, "h264", 1)  # 25 fps, GOP 25
    media = generate(spec, 30 if short else 90, cache)
    results: list[TickResult] = []
    with tempfile.TemporaryDirectory(prefix="streamgrid-ticks-") as tmp:
        work = Path(tmp)
        server = MediaMtx(work, "bench-mediamtx").start()
        try:
            server.publish(PATH, media)
            table = contenders(server.url(PATH), work, baseline)

            if short:
                table = dict(itertools.islice(table.items(), 1))
            for name, env in table.items():
                argv = [sys.executable, "-m", "streamgrid.capture"]
                with running(name, argv, env, work, warmup) as worker:
                    wall0 = time.time()
                    cpu = worker.cpu_over(window)
                    wall1 = time.time()
                times = [s["at"] for s in worker.samples() if wall0 <= s["at"] <= wall1]
                gaps = [b - a for a, b in itertools.pairwise([wall0, *times, wall1])]
                result = TickResult(name, (wall1 - wall0) / INTERVAL, len(times), max(gaps), cpu)
                results.append(result)
                print(
                    f"  {name:38s} {result.served:6.1%} of ticks  longest gap "
                    f"{result.longest_gap:.2f} s  {cpu:5.2f}% CPU",
                    flush=True,
                )
        finally:
            server.stop()
    reference = next((r for r in results if "reference" in r.contender), None)
    lines = [
        f"mediamtx v1.14.0, {spec.name} (25 fps, a keyframe every second), interval "
        f"{INTERVAL:g} s, {window:g} s windows, one contender at a time.",
        "",
        "| contender | ticks with a sample | longest gap s | CPU % of a core | x lazy CPU |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r.cpu / reference.cpu:.2f}" if reference and reference.cpu > 0 else "—"
        lines.append(
            f"| {r.contender} | {r.served:.1%} ({r.samples}/{r.ticks:.0f}) | "
            f"{r.longest_gap:.2f} | {r.cpu:.2f} | {ratio} |"
        )
    return lines
