"""Capture cost per stream: our worker against ffmpeg and OpenCV, side by side.

Each contender reads the same media over RTSP from a local GStreamer server
for the same window, one at a time, and is measured from /proc: CPU (% of
one core), peak RSS; for our worker also sample lag (picture age relative to
the freshest sample of the run, from PTS) and start-to-first-sample. Ratios
are against ffmpeg `-vf fps` on the same media in the same run.

Then a concurrency run: N workers at once on one shared stream, N doubling
until samples start to lag; that N over the cores is real streams per core.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from streamgrid.cli import CAMERA_SCRIPT, SYSTEM_PYTHON

from .media import MediaSpec, generate
from .procstat import CpuWindow, peak_rss_mb, private_mb

ROOT = Path(__file__).resolve().parent.parent
FFMPEG = "ffmpeg"


@dataclass
class Result:
    media: str
    interval: float
    contender: str
    cpu: float
    rss_mb: float
    private_mb: float
    samples: int = 0
    lag_p50: float | None = None
    lag_p95: float | None = None
    first_sample_s: float | None = None
    decodes_per_sample: float | None = None
    ratio: float | None = None


@dataclass
class Worker:
    """One running contender process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    err_path: Path
    started: float
    cpu: CpuWindow = field(init=False)

    def __post_init__(self) -> None:
        self.cpu = CpuWindow(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cpu_over(self, window: float) -> float:
        """CPU % over the next ``window`` seconds; raises if the process has exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited early:\n{self.err_path.read_text()[-2000:]}")
        self.cpu.start(time.monotonic())
        time.sleep(window)
        return self.cpu.percent(time.monotonic())

    def samples(self) -> list[dict[str, float]]:
        out = []
        for line in self.err_path.read_text(errors="replace").splitlines():
            if '"worker.sample"' in line:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


def spawn(name: str, argv: list[str], work: Path, env: dict[str, str] | None = None) -> Worker:
    err = work / f"{name}.err"
    with err.open("wb") as f:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=f,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    return Worker(name, process, err, time.time())


def our_worker(url: str, interval: float, mode: str, work: Path, name: str) -> dict[str, str]:
    return {
        "STREAMGRID_STREAM_ID": name.replace("_", "-"),
        "STREAMGRID_SOURCE_URL": url,
        "STREAMGRID_CAPTURE_INTERVAL": str(interval),
        "STREAMGRID_STORE_URL": str(work / "store"),
        "STREAMGRID_LOG_LEVEL": "DEBUG",
        "STREAMGRID_PROGRESS": "none",
        "STREAMGRID_DECODE_MODE": mode,
    }


def contenders(
    url: str, interval: float, work: Path, short: bool
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (argv, env)."""
    out_jpg = str(work / "ffmpeg-out.jpg")
    ff_in = [FFMPEG, "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp"]
    fps = f"fps=1/{interval:g}"
    py = sys.executable
    table: dict[str, tuple[list[str], dict[str, str]]] = {
        "streamgrid (auto)": (
            [py, "-m", "streamgrid.capture"],
            our_worker(url, interval, "auto", work, "sg-auto"),
        ),
        "ffmpeg -vf fps": ([*ff_in, "-i", url, "-vf", fps, "-update", "1", "-y", out_jpg], {}),
    }
    if short:
        return table
    table.update(
        {
            "streamgrid (decode all)": (
                [py, "-m", "streamgrid.capture"],
                our_worker(url, interval, "all", work, "sg-all"),
            ),
            "ffmpeg -threads 1 -vf fps": (
                [
                    *ff_in,
                    "-threads",
                    "1",
                    "-i",
                    url,
                    "-filter_threads",
                    "1",
                    "-vf",
                    fps,
                    "-update",
                    "1",
                    "-y",
                    out_jpg,
                ],
                {},
            ),
            "ffmpeg -skip_frame nokey": (
                [
                    *ff_in,
                    "-skip_frame",
                    "nokey",
                    "-i",
                    url,
                    "-vf",
                    fps,
                    "-update",
                    "1",
                    "-y",
                    out_jpg,
                ],
                {},
            ),
            "ffmpeg demux only (floor)": ([*ff_in, "-i", url, "-c", "copy", "-f", "null", "-"], {}),
            "opencv read all": (
                [py, str(ROOT / "bench" / "opencv_reader.py"), url, str(interval), "read"],
                {},
            ),
            "opencv grab all, retrieve at tick": (
                [py, str(ROOT / "bench" / "opencv_reader.py"), url, str(interval), "grab"],
                {},
            ),
        }
    )
    return table


def plan_runs(
    specs: list[MediaSpec], interval: float, short: bool
) -> list[tuple[MediaSpec, float, tuple[str, ...]]]:
    """Every media at the chosen interval; in the full run, the GOP-2 s H.264
    media also at a 2 s interval (interval >= GOP: the keyframe path)."""
    runs: list[tuple[MediaSpec, float, tuple[str, ...]]] = [(s, interval, ()) for s in specs]
    if not short:
        few = ("streamgrid (auto)", "ffmpeg -vf fps", "ffmpeg -skip_frame nokey")
        runs += [(s, 2.0, few) for s in specs if s.codec == "h264" and s.gop_seconds == 2]
    return runs


def lag_stats(samples: list[dict[str, float]]) -> tuple[float | None, float | None]:
    offsets = [s["at"] - s["pts"] for s in samples if s.get("pts") is not None]
    if not offsets:
        return None, None
    base = min(offsets)
    lags = sorted(o - base for o in offsets)
    p95 = lags[min(len(lags) - 1, round(0.95 * (len(lags) - 1)))]
    return statistics.median(lags), p95


@contextlib.contextmanager
def running(
    name: str, argv: list[str], env: dict[str, str], work: Path, warmup: float
) -> Iterator[Worker]:
    """One contender, started and past its warm-up; stopped on exit."""
    file_name = name.replace(" ", "_").replace("/", "_").replace("'", "")
    worker = spawn(file_name, argv, work, env)
    try:
        time.sleep(warmup)
        yield worker
    finally:
        worker.stop()


def measure(
    name: str,
    argv: list[str],
    env: dict[str, str],
    media: str,
    interval: float,
    work: Path,
    warmup: float,
    window: float,
) -> Result:
    with running(name, argv, env, work, warmup) as worker:
        cpu = worker.cpu_over(window)
        rss = peak_rss_mb(worker.process.pid)
        private = private_mb(worker.process.pid)
    samples = worker.samples()
    result = Result(media, interval, name, cpu, rss, private, samples=len(samples))
    if samples:
        result.lag_p50, result.lag_p95 = lag_stats(samples)
        result.first_sample_s = samples[0]["at"] - worker.started
        result.decodes_per_sample = samples[-1]["decodes"] / len(samples)
    return result


@dataclass
class ConcurrencyStep:
    workers: int
    cpu_total: float
    worst_p95_lag: float
    min_samples: int
    expected: int
    ok: bool


def concurrency(
    url: str,
    steps: list[int],
    interval: float,
    work: Path,
    warmup: float,
    window: float,
    max_lag: float,
) -> list[ConcurrencyStep]:
    out: list[ConcurrencyStep] = []
    for n in steps:
        available_mb = _available_mb()
        if n * 150 > available_mb:
            print(
                f"  {n:4d} workers: skipped, {available_mb:.0f} MB of memory available", flush=True
            )
            break
        workers = []
        for i in range(n):
            argv = [sys.executable, "-m", "streamgrid.capture"]
            env = our_worker(url, interval, "auto", work / f"c{n}", f"c{n}-{i}")
            workers.append(spawn(f"c{n}-{i}", argv, work, env))
        try:
            # N interpreters import on two cores: wait until every worker has sampled.
            deadline = time.monotonic() + warmup + 3.0 * n
            while time.monotonic() < deadline and not all(w.samples() for w in workers):
                time.sleep(0.5)
            time.sleep(warmup)
            t0 = time.monotonic()
            for w in workers:
                w.cpu.start(t0)
            wall0 = time.time()
            time.sleep(window)
            now = time.monotonic()
            cpu_total = sum(w.cpu.percent(now) for w in workers)
            wall1 = time.time()
        finally:
            for w in workers:
                w.process.send_signal(signal.SIGTERM)
            for w in workers:
                w.stop()
        lags, counts = [], []
        for w in workers:
            in_window = [s for s in w.samples() if wall0 <= s["at"] <= wall1]
            counts.append(len(in_window))
            lags.append(lag_stats(w.samples())[1] or 0.0)
        expected = int(window / interval)
        ok = min(counts) >= 0.9 * expected - 1 and max(lags) <= max_lag
        if not ok:  # say why: the worst worker's own events, samples aside
            worst = workers[counts.index(min(counts))]
            events = [
                line
                for line in worst.err_path.read_text(errors="replace").splitlines()
                if '"worker.sample"' not in line
            ]
            print(
                f"  {worst.name}, {min(counts)} samples in the window:",
                *events[-6:],
                "the camera's last words:",
                *(work / "camera.log").read_text(errors="replace").splitlines()[-10:],
                sep="\n    ",
                flush=True,
            )
        out.append(ConcurrencyStep(n, cpu_total, max(lags), min(counts), expected, ok))
        print(
            f"  {n:4d} workers: {cpu_total:6.1f}% CPU in all, worst p95 lag "
            f"{max(lags):.2f} s, fewest samples {min(counts)}/{expected} "
            f"-> {'ok' if ok else 'LAGGING'}",
            flush=True,
        )
        if not ok:
            break
    return out


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def serving(files: dict[str, Path], shared: dict[str, Path]) -> Iterator[tuple[Path, int]]:
    """The test camera serving ``files`` (a pipeline per client) and ``shared``
    (one pipeline for all) on 127.0.0.1; yields (work folder, port)."""
    with tempfile.TemporaryDirectory(prefix="streamgrid-bench-") as tmp:
        work, port = Path(tmp), 18000 + os.getpid() % 2000
        argv = [SYSTEM_PYTHON, str(CAMERA_SCRIPT), "--port", str(port)]
        for mount, path in files.items():
            argv += ["--file", f"/{mount}={path}"]
        for mount, path in shared.items():
            argv += ["--shared-file", f"/{mount}={path}"]
        log = work / "camera.log"
        with log.open("wb") as out:
            camera = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while "READY" not in log.read_text():
                if camera.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("camera did not start:\n" + log.read_text())
                time.sleep(0.1)
            yield work, port
        finally:
            camera.send_signal(signal.SIGTERM)
            camera.wait(10)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import av

    ff = subprocess.run([FFMPEG, "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return (
        f"{model}, {os.cpu_count()} cores, Linux {platform.release()}; "
        f"PyAV {av.__version__} (FFmpeg {av.library_versions['libavcodec']}); {ff}"
    )


def fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def table(results: list[Result]) -> str:
    head = (
        "| media | interval s | contender | CPU % of a core | x ffmpeg fps | "
        "CPU-bound streams/core | lag p50 / p95 s | first sample s | decodes/sample | "
        "private MB | peak RSS MB |\n"
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for r in results:
        rows.append(
            f"| {r.media} | {r.interval:g} | {r.contender} | {r.cpu:.2f} | {fmt(r.ratio, '.2f')} | "
            f"{100 / r.cpu if r.cpu > 0 else float('inf'):.0f} | "
            f"{fmt(r.lag_p50, '.3f')} / {fmt(r.lag_p95, '.3f')} | "
            f"{fmt(r.first_sample_s, '.2f')} | {fmt(r.decodes_per_sample, '.1f')} | "
            f"{r.private_mb:.0f} | {r.rss_mb:.0f} |"
        )
    return head + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--short", action="store_true", help="a few seconds, for CI")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--window", type=float, help="measured seconds per contender")
    parser.add_argument("--markdown", type=Path, help="also write the results here")
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    parser.add_argument("--cache", type=Path, default=cache_home / "streamgrid" / "bench-media")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--steps", help="concurrency steps, e.g. 8,16,32")
    parser.add_argument(
        "--concurrency-only",
        action="store_true",
        help="only the concurrency run (no per-contender table)",
    )
    parser.add_argument(
        "--attribute",
        action="store_true",
        help="where the keyframe path's CPU goes (720p H.264, GOP 2 s, interval 2 s)",
    )
    parser.add_argument(
        "--ticks",
        action="store_true",
        help="only the share of ticks served with GOP == interval, on mediamtx",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="with --ticks or --attribute: a checkout of another revision (its extensions "
        "built in place), measured side by side with this one",
    )

    parser.add_argument(
        "--fleet",
        help="the cluster runtime at these fleet sizes, e.g. 1000,3000,10000 (bench/fleet.py); "
        "with --baseline-tree also that tree's operator and gateway, at --fleet-baseline sizes",
    )
    parser.add_argument("--fleet-baseline", help="sizes also run with --baseline-tree")
    parser.add_argument(
        "--density",
        help="streams per machine at these counts, e.g. 1,16,64,128: a real streamgrid serve "
        "beside as many ffmpeg, on a mediamtx fan-out of one camera (bench/density.py)",
    )
    parser.add_argument(
        "--worker-memory",
        action="store_true",
        help="one capture pod's private memory and import time beside ffmpeg -skip_frame nokey, "
        "on mediamtx (bench/worker_memory.py); with --baseline-tree also that tree's worker",
    )
    args = parser.parse_args(argv)
    if args.worker_memory:
        from . import worker_memory

        return worker_memory.main(
            args.cache, args.short, args.window, args.baseline_tree, args.markdown
        )
    if args.fleet:
        return fleet_main(args)
    if args.density:
        return density_main(args)
    if args.attribute:
        return attribute(args.cache, args.window or 20.0, baseline=args.baseline_tree)
    if args.ticks:
        from .ticks import run_ticks

        window = args.window or (10.0 if args.short else 60.0)
        print("\n".join(run_ticks(args.cache, window, 5.0, args.short, args.baseline_tree)))
        return 0

    if args.short:
        specs = [MediaSpec(720, "h264", 1)]
        seconds, warmup, window = 12, 3.0, args.window or 3.0
        steps = [2]
    else:
        specs = [
            MediaSpec(720, "h264", 1),
            MediaSpec(720, "h264", 2),
            MediaSpec(1080, "h264", 2),
            MediaSpec(720, "h265", 2),
            MediaSpec(1080, "h265", 1),
        ]
        seconds, warmup, window = 40, 5.0, args.window or 20.0
        steps = [int(n) for n in args.steps.split(",")] if args.steps else [8, 16, 32, 64, 128]
    shared_spec = MediaSpec(720, "h264", 1)

    print(f"machine: {machine()}", flush=True)
    print("generating media (cached) ...", flush=True)
    files = {spec.name: generate(spec, seconds, args.cache) for spec in specs}
    conc_seconds = 30 if args.short else 600
    shared = {"shared": generate(shared_spec, conc_seconds, args.cache)}

    results: list[Result] = []
    with serving(files, shared) as (work, port):
        runs = [] if args.concurrency_only else plan_runs(specs, args.interval, args.short)
        for spec, interval, only in runs:
            url = f"rtsp://127.0.0.1:{port}/{spec.name}"
            print(f"{spec.name}: interval {interval:g} s", flush=True)
            run: list[Result] = []
            for name, (cmd, env) in contenders(url, interval, work, args.short).items():
                if only and name not in only:
                    continue
                r = measure(name, cmd, env, spec.name, interval, work, warmup, window)
                run.append(r)
                lag = f"  lag p95 {r.lag_p95:.3f} s" if r.lag_p95 is not None else ""
                print(
                    f"  {name:36s} {r.cpu:6.2f}% CPU  {r.private_mb:4.0f} MB private  "
                    f"{r.rss_mb:4.0f} MB RSS{lag}",
                    flush=True,
                )

            base = next(r for r in run if r.contender == "ffmpeg -vf fps")
            for r in run:
                r.ratio = r.cpu / base.cpu if base.cpu > 0 else None
            results += run
        print(
            f"concurrency: {shared_spec.name}, interval {args.interval:g} s, one shared stream",
            flush=True,
        )
        steps_out = concurrency(
            f"rtsp://127.0.0.1:{port}/shared",
            steps,
            args.interval,
            work,
            warmup,
            window,
            max_lag=shared_spec.gop_seconds,
        )

    from .ticks import run_ticks

    print("ticks served with GOP == interval, on mediamtx", flush=True)
    tick_lines = run_ticks(args.cache, 10.0 if args.short else 60.0, warmup, args.short)

    api_lines: list[str] = []
    if not args.skip_api:
        from .api import run_api_bench

        api_lines = run_api_bench(short=args.short)

    report = ["## Capture cost per stream", "", table(results), ""]
    passed = [s for s in steps_out if s.ok]
    report += [
        "## Concurrency",
        "",
        "| workers | CPU % in all | worst p95 lag s | fewest samples | ok |",
        "|---:|---:|---:|---:|---|",
    ]
    report += [
        f"| {s.workers} | {s.cpu_total:.1f} | {s.worst_p95_lag:.2f} | "
        f"{s.min_samples}/{s.expected} | {'yes' if s.ok else 'no'} |"
        for s in steps_out
    ]
    cores = os.cpu_count() or 1
    if passed:
        report += [
            "",
            # Measured, unlike the table's "CPU-bound streams/core" (100 / CPU % of
            # one stream: what CPU alone would allow, with nothing else in the way).
            f"Workers that kept up on the test camera: {passed[-1].workers} on {cores} "
            "cores (the GStreamer camera's own limit: a pipeline per client; streams per "
            "core are measured on mediamtx, `python -m bench --density`, in 'Streams per "
            "machine').",
        ]
    report += ["", "## Ticks served when GOP == interval", "", *tick_lines]
    report += ["", "## API", "", *api_lines]

    text = "\n".join(report)
    print()
    print(text)
    if args.markdown:
        write_results(
            args.markdown,
            f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}\n\n"
            f"Command: `python -m bench{' --short' if args.short else ''}`\n\n{text}\n",
        )
    return 0


START, END = "<!-- results: written by python -m bench --markdown -->", "<!-- /results -->"


def attribution_contenders(url: str, work: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    loops = [sys.executable, str(ROOT / "bench" / "demux_loops.py"), url]
    ffmpeg_in = [FFMPEG, "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url]
    return {
        "ffmpeg demux only (floor)": ([*ffmpeg_in, "-c", "copy", "-f", "null", "-"], {}),
        "ctypes av_read_frame loop (PyAV's libavformat)": ([*loops, "ctypes", "2"], {}),
        "PyAV demux, empty loop": ([*loops, "pyav", "2"], {}),
        "PyAV demux + a keyframe per 2 s": ([*loops, "pyav-keyframe", "2"], {}),
        **{
            f"streamgrid (auto), {label}": (
                [sys.executable, "-m", "streamgrid.capture"],
                {
                    **our_worker(url, 2.0, "auto", work, f"sg-{demuxer}"),
                    "STREAMGRID_LOG_LEVEL": "INFO",
                    "STREAMGRID_DEMUXER": demuxer,
                },
            )
            for demuxer, label in (
                ("pyav", "PyAV's demux"),
                ("rtp", "own RTSP + C receive"),
            )
        },
    }


def at_tree(env: dict[str, str], tree: Path) -> dict[str, str]:
    """A worker's environment that runs another checkout's code (its extensions
    built in place); PYTHONSAFEPATH: the working directory must not come first."""
    return {**env, "PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"}


def baseline_contenders(
    url: str, work: Path, tree: Path
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """This checkout's worker beside another's, on the keyframe path."""
    argv = [sys.executable, "-m", "streamgrid.capture"]
    env = {**our_worker(url, 2.0, "auto", work, "sg-now"), "STREAMGRID_LOG_LEVEL": "INFO"}
    return {
        "streamgrid (auto), this checkout": (argv, env),
        f"streamgrid (auto), at {tree.name}": (argv, at_tree(env, tree)),
    }


def cpu_windows(
    name: str, argv: list[str], env: dict[str, str], work: Path, warmup: float, windows: list[float]
) -> list[float]:
    """CPU % of one process over consecutive windows after a warm-up."""
    with running(name, argv, env, work, warmup) as worker:
        return [worker.cpu_over(window) for window in windows]


def attribute(cache: Path, window: float, rounds: int = 2, baseline: Path | None = None) -> int:
    """Each contender in turn, ``rounds`` times, on one stream, over two windows:
    5 s to 5 s + window, while a worker's top K fills (its first 9 samples are
    JPEG-encoded whatever their brightness), then the next window, the steady
    state. See docs/benchmarks.md, "Where a worker's CPU goes". With
    ``baseline`` (a checkout of another revision), only our worker, beside that
    revision's."""
    spec = MediaSpec(720, "h264", 2)
    media = generate(spec, 60, cache)  # longer than both windows: no reconnect inside
    print(f"machine: {machine()}", flush=True)
    print(f"  {'':9s} {'':50s} {'filling':>8s} {'steady':>8s}  (% of a core)", flush=True)
    with serving({spec.name: media}, {}) as (work, port):
        url = f"rtsp://127.0.0.1:{port}/{spec.name}"
        for round_ in range(rounds):
            table = (
                attribution_contenders(url, work)
                if baseline is None
                else baseline_contenders(url, work, baseline)
            )
            for name, (cmd, env) in table.items():
                first, second = cpu_windows(name, cmd, env, work, 5.0, [window, window])
                print(f"  round {round_ + 1}  {name:50s} {first:7.2f}% {second:7.2f}%", flush=True)
    return 0


def write_results(path: Path, results: str) -> None:
    """Replaces only the results section, keeping the prose around it."""
    block = f"{START}\n{results}{END}"
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = (text + "\n" if text else "# Benchmarks\n\n") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())


def fleet_main(args: argparse.Namespace) -> int:
    from . import fleet

    sizes = [int(size) for size in args.fleet.split(",")]
    baseline_sizes = [int(size) for size in (args.fleet_baseline or "").split(",") if size]
    window = args.window or (20.0 if args.short else 90.0)
    settle = 10.0 if args.short else 60.0
    with tempfile.TemporaryDirectory(prefix="streamgrid-fleet-") as tmp:
        results = fleet.run_fleet(
            sizes, Path(tmp), args.baseline_tree, baseline_sizes, window, settle
        )
    text = f"{fleet.table(results)}\n\n{fleet.details(results)}\n\n" + "\n".join(
        fleet.budget_line(r) for r in results if r.variant == "this tree"
    )
    print(text)
    if args.markdown:
        write_fleet_results(args.markdown, text, args)
    return 0


def write_fleet_results(path: Path, text: str, args: argparse.Namespace) -> None:
    """Replaces the fleet section of docs/benchmarks.md (between its markers)."""
    begin, end = "<!-- fleet:begin -->", "<!-- fleet:end -->"
    command = f"python -m bench --fleet {args.fleet}"
    if args.baseline_tree:
        command += f" --baseline-tree <checkout> --fleet-baseline {args.fleet_baseline}"
    block = f"{begin}\nCommand: `{command}` on {machine()}\n\n{text}\n{end}"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip() + "\n\n## Fleet scale (cluster runtime)\n\n" + block + "\n"
    path.write_text(new)


def density_main(args: argparse.Namespace) -> int:
    from . import density

    steps = [int(n) for n in args.density.split(",")]
    warmup, window = (5.0, args.window or 10.0) if args.short else (20.0, args.window or 60.0)
    print(f"machine: {machine()}", flush=True)
    results = density.run_density(steps, args.cache, args.interval, warmup, window)
    text = f"{density.table(results)}\n\n{density.streams_per_core(results)}"
    print(text)
    if args.markdown:
        write_density_results(args.markdown, text, args)
    return 0


def write_density_results(path: Path, text: str, args: argparse.Namespace) -> None:
    """Replaces the density section of docs/benchmarks.md (between its markers)."""
    begin, end = "<!-- density:begin -->", "<!-- density:end -->"
    command = f"python -m bench --density {args.density}"
    block = f"{begin}\nCommand: `{command}` on {machine()}\n\n{text}\n{end}"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip() + "\n\n## Streams per machine (embedded runtime)\n\n" + block + "\n"
    path.write_text(new)
