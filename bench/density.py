"""Streams per machine: N streams of one camera on a real ``streamgrid serve``,
beside N ffmpeg processes on the same camera (``python -m bench --density``).

mediamtx (tools/mediamtx/build.sh) fans one camera out to every reader
without re-encoding, so the camera side stays cheap: ffmpeg publishes a
720p25 H.264 High clip (GOP 1 s, 2.5 Mb/s; bench/media.py) in real time, in
a loop, with ``-c copy``. Per step N:

- **serve**: a fresh `streamgrid serve` (its own data directory), N streams
  started through /start at the interval, a warm-up, then a window in which
  each stream's samples are counted (its frames_captured in /list, before
  and after), and the serve tree (the server, its template process, its
  workers: every descendant) is measured from /proc: CPU (user + system of
  each, as a percentage of one core), and memory from each process's
  smaps_rollup: USS (its private pages, what it alone costs) and PSS
  (shared pages split between their sharers: the sum is what the tree holds
  in all).
- **ffmpeg**: then, on the same fan-out, N times ``ffmpeg -skip_frame nokey -i
  <url> -vf fps=1/<interval> -update 1 out.jpg`` (one ffmpeg per camera, as
  Frigate-style setups run), measured the same way over the same window.

Memory per extra stream is the tree's growth from the step before (from the
idle server, measured first, for the first step), divided by the streams
added. The machine's CPU not used by either side nor by mediamtx is shown
too, as ``others``: the load of whatever else ran meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .media import MediaSpec, generate
from .procstat import TICK

PATH = "pub-density"
GOAL_SHARE = 58 / 60  # every stream at least 58 of 60 samples


@dataclass
class Tree:
    """CPU seconds and memory (kB) of a set of processes, at one instant."""

    cpu: dict[int, float] = field(default_factory=dict)  # with its reaped children's
    own: dict[int, float] = field(default_factory=dict)
    uss_kb: int = 0
    pss_kb: int = 0
    processes: int = 0


@dataclass
class Step:
    streams: int
    interval: float
    window: float
    samples: list[int] = field(default_factory=list)  # per stream, in the window
    serve_cpu: float = 0.0  # % of one core, the whole tree
    gateway_cpu: float = 0.0  # % of one core, the server process alone
    serve_uss_mb: float = 0.0
    serve_pss_mb: float = 0.0
    serve_processes: int = 0
    ffmpeg_cpu: float = 0.0
    ffmpeg_uss_mb: float = 0.0
    ffmpeg_pss_mb: float = 0.0
    others_cpu: float = 0.0  # % of one core used by neither, nor mediamtx
    mediamtx_cpu: float = 0.0
    extra_uss_mb: float | None = None  # per stream added since the step before
    extra_pss_mb: float | None = None
    loadavg: str = ""

    @property
    def expected(self) -> int:
        return round(self.window / self.interval)

    @property
    def kept_up(self) -> bool:
        return bool(self.samples) and min(self.samples) >= GOAL_SHARE * self.expected


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children of each of its threads)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                queue += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(utime + stime, the same with its reaped children's); None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    own = sum(int(v) for v in fields[11:13]) / TICK
    return own, own + sum(int(v) for v in fields[13:15]) / TICK


def measure(pids: list[int], memory: bool = False) -> Tree:
    tree = Tree()
    for pid in pids:
        cpu = cpu_seconds(pid)
        if cpu is None:
            continue
        tree.own[pid], tree.cpu[pid] = cpu
        tree.processes += 1
        if not memory:
            continue
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "Pss":
                    tree.pss_kb += int(value.split()[0])
                elif key in ("Private_Clean", "Private_Dirty"):
                    tree.uss_kb += int(value.split()[0])
    return tree


def cpu_percent(before: Tree, after: Tree, seconds: float) -> float:
    """Of the processes alive at both ends (a process reaped meanwhile moved
    into its parent's children's times, counted there)."""
    used = sum(after.cpu[p] - before.cpu[p] for p in after.cpu if p in before.cpu)
    return 100.0 * used / seconds


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return float(sum(values[:8]) - idle), float(sum(values[:8]))


@contextlib.contextmanager
def serving(work: Path, streams: int, extra_env: dict[str, str]) -> Iterator[tuple[int, str]]:
    """A `streamgrid serve` with room for ``streams``; yields (pid, base URL)."""
    from testbed.processes import free_port

    port = free_port()
    env = {
        **os.environ,
        "STREAMGRID_STORE_URL": str(work / f"data-{streams}"),
        "STREAMGRID_MAX_STREAMS": str(max(streams, 1)),
        "STREAMGRID_LOG_LEVEL": "WARNING",
        "STREAMGRID_WORKER_LOG_LEVEL": "WARNING",
        **extra_env,
    }
    log = (work / f"serve-{streams}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamgrid.cli", "serve", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited: {(work / f'serve-{streams}.log').read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not answer in 60 s")
            time.sleep(0.2)
        yield process.pid, base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def counts(client: httpx.Client) -> dict[str, int]:
    listed = client.get("/list").json()["active_streams"]
    return {stream_id: int(entry["frames_captured"]) for stream_id, entry in listed.items()}


class Window:
    """CPU of some processes, the machine's and mediamtx's, over a window."""

    def __init__(self, pids: list[int], mediamtx: int) -> None:
        self.pids, self.mediamtx = pids, mediamtx
        self.tree = measure(pids)
        self.camera = measure([mediamtx])
        self.machine = machine_busy()
        self.started = time.monotonic()

    def end(self) -> tuple[Tree, Tree, float, float, float]:
        """(tree before, tree after, seconds, mediamtx %, others %)."""
        seconds = time.monotonic() - self.started
        after = measure(self.pids)
        camera = cpu_percent(self.camera, measure([self.mediamtx]), seconds)
        busy, total = machine_busy()
        cores = os.cpu_count() or 1
        machine = 100.0 * cores * (busy - self.machine[0]) / max(1.0, total - self.machine[1])
        ours = cpu_percent(self.tree, after, seconds)
        return self.tree, after, seconds, camera, max(0.0, machine - ours - camera)


def serve_step(
    step: Step, url: str, work: Path, warmup: float, mediamtx: int, extra_env: dict[str, str]
) -> int:
    """Runs the serve side of a step; the idle server's USS, kB (before any stream)."""
    with (
        serving(work, step.streams, extra_env) as (pid, base),
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        idle = measure(descendants(pid), memory=True).uss_kb
        ids = []
        for _ in range(step.streams):
            response = client.post(
                "/start", data={"rtsp_url": url}, params={"capture_interval": step.interval}
            )
            response.raise_for_status()
            ids.append(response.json()["stream_id"])
        deadline = time.monotonic() + warmup + step.streams * 0.5
        while time.monotonic() < deadline and min(counts(client).values(), default=0) < 1:
            time.sleep(0.5)
        time.sleep(warmup)
        pids = descendants(pid)
        first = counts(client)
        window = Window(pids, mediamtx)
        time.sleep(step.window)
        before, after, seconds, step.mediamtx_cpu, step.others_cpu = window.end()
        last = counts(client)
        memory = measure(descendants(pid), memory=True)
        step.window = seconds
        step.samples = [last.get(i, 0) - first.get(i, 0) for i in ids]
        step.serve_cpu = cpu_percent(before, after, seconds)
        step.gateway_cpu = 100.0 * (after.own.get(pid, 0.0) - before.own.get(pid, 0.0)) / seconds
        step.serve_uss_mb, step.serve_pss_mb = memory.uss_kb / 1024, memory.pss_kb / 1024
        step.serve_processes = memory.processes
        step.loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return idle


def ffmpeg_step(step: Step, url: str, work: Path, warmup: float, mediamtx: int) -> None:
    out = work / "ffmpeg"
    out.mkdir(exist_ok=True)
    processes = []
    try:
        for i in range(step.streams):
            argv = [
                "ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
                "-skip_frame", "nokey", "-i", url, "-vf", f"fps=1/{step.interval:g}",
                "-update", "1", "-y", str(out / f"{i}.jpg"),
            ]  # fmt: skip
            processes.append(
                subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=(out / f"{i}.err").open("wb"),
                )
            )
        time.sleep(warmup)
        pids = [p.pid for p in processes]
        window = Window(pids, mediamtx)
        time.sleep(step.window)
        before, after, seconds, _, _ = window.end()
        memory = measure(pids, memory=True)
        if memory.processes < step.streams:
            raise RuntimeError(f"only {memory.processes} of {step.streams} ffmpeg still run")
        step.ffmpeg_cpu = cpu_percent(before, after, seconds)
        step.ffmpeg_uss_mb, step.ffmpeg_pss_mb = memory.uss_kb / 1024, memory.pss_kb / 1024
    finally:
        for p in processes:
            p.send_signal(signal.SIGTERM)
        for p in processes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_density(
    steps: list[int],
    cache: Path,
    interval: float,
    warmup: float,
    window: float,
    extra_env: dict[str, str] | None = None,
    ffmpeg: bool = True,
) -> list[Step]:
    from testbed.mediamtx import MediaMtx

    spec = MediaSpec(720, "h264", 1)
    clip = generate(spec, 60, cache)
    results: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="streamgrid-density-") as tmp:
        work = Path(tmp)
        server = MediaMtx(work, "density-mediamtx").start()
        try:
            server.publish(PATH, clip)
            url = server.url(PATH)
            mediamtx = server.log.process.pid if server.log.process else 0
            previous: tuple[int, float, float] | None = None  # streams, USS, PSS (MB)
            for n in steps:
                step = Step(n, interval, window)
                idle = serve_step(step, url, work, warmup, mediamtx, extra_env or {})
                base = previous or (0, idle / 1024, idle / 1024)
                added = n - base[0]
                if added > 0:
                    step.extra_uss_mb = (step.serve_uss_mb - base[1]) / added
                    step.extra_pss_mb = (step.serve_pss_mb - base[2]) / added
                previous = (n, step.serve_uss_mb, step.serve_pss_mb)
                if ffmpeg:
                    ffmpeg_step(step, url, work, warmup, mediamtx)
                results.append(step)
                print(line(step), flush=True)
        finally:
            server.stop()
    return results


def line(s: Step) -> str:
    return (
        f"  {s.streams:4d} streams: samples fewest {min(s.samples)}/{s.expected}, median "
        f"{statistics.median(s.samples):g}; serve {s.serve_cpu:.1f}% CPU "
        f"({s.gateway_cpu:.1f}% the gateway), USS {s.serve_uss_mb:.0f} MB, PSS "
        f"{s.serve_pss_mb:.0f} MB in {s.serve_processes} processes; ffmpeg {s.ffmpeg_cpu:.1f}% "
        f"CPU, USS {s.ffmpeg_uss_mb:.0f} MB, PSS {s.ffmpeg_pss_mb:.0f} MB; mediamtx "
        f"{s.mediamtx_cpu:.1f}%, others {s.others_cpu:.0f}%, load {s.loadavg}"
    )


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "—"


def table(steps: list[Step]) -> str:
    rows = [
        "| streams | fewest / median samples | serve CPU % per stream (gateway) | ffmpeg CPU % "
        "per stream | x ffmpeg | serve USS / PSS MB per stream | ffmpeg USS / PSS MB per "
        "stream | x ffmpeg (PSS) | serve USS / PSS MB per extra stream | serve PSS MB in all | "
        "ffmpeg PSS MB in all | others' CPU % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in steps:
        n = s.streams
        extra = (
            f"{s.extra_uss_mb:.1f} / {s.extra_pss_mb:.1f}" if s.extra_uss_mb is not None else "—"
        )
        rows.append(
            f"| {n} | {min(s.samples)} / {statistics.median(s.samples):g} (of {s.expected}) | "
            f"{s.serve_cpu / n:.2f} ({s.gateway_cpu / n:.2f}) | {s.ffmpeg_cpu / n:.2f} | "
            f"{ratio(s.serve_cpu, s.ffmpeg_cpu)} | {s.serve_uss_mb / n:.1f} / "
            f"{s.serve_pss_mb / n:.1f} | {s.ffmpeg_uss_mb / n:.1f} / {s.ffmpeg_pss_mb / n:.1f} | "
            f"{ratio(s.serve_pss_mb, s.ffmpeg_pss_mb)} | {extra} | {s.serve_pss_mb:.0f} | "
            f"{s.ffmpeg_pss_mb:.0f} | {s.others_cpu:.0f} |"
        )
    return "\n".join(rows)


def streams_per_core(steps: list[Step]) -> str:
    cores = os.cpu_count() or 1
    kept = [s for s in steps if s.kept_up]
    if not kept:
        return f"Streams per core: no step kept every stream at {GOAL_SHARE:.0%} of its samples."
    best = max(kept, key=lambda s: s.streams)
    return (
        f"Streams per core (720p25, interval {best.interval:g} s, mediamtx fan-out, "
        f"`python -m bench --density`): at least {best.streams / cores:g} ({best.streams} streams "
        f"on {cores} cores, every stream at least {min(best.samples)} of {best.expected} "
        f"samples, the serve tree at {best.serve_cpu / best.streams:.2f} % of a core per stream)."
    )
