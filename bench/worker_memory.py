"""``python -m bench --worker-memory``: what one capture pod's process costs in
memory, beside ``ffmpeg -skip_frame nokey`` on the same stream, in the same run.

mediamtx (tools/mediamtx/build.sh; the tests' runner, testbed/mediamtx.py)
serves a 720p and a 1080p H.264 camera (bench/media.py). On each, at once:

- our worker as a capture pod runs it: ``python -m streamgrid.capture`` with
  the pod's settings (operator/podspec.py: progress PATCHed to a VideoStream
  status over HTTPS, the health and /metrics port open, frames into an S3
  bucket), interval 1 s; S3 is SeaweedFS (testbed/s3.py), the API server
  a small HTTPS stand-in in this process that answers each PATCH as
  kube-apiserver would (the status back);
- ``ffmpeg -skip_frame nokey -rtsp_transport tcp -i URL -vf fps=1 -f null -``
  (a keyframe a second, decoded and dropped: the cheapest ffmpeg sampler);
- ``ffmpeg ... -c copy -f null -``: FFmpeg's demux alone, the floor.

After a warm-up, private memory is read every second for the window:
``RssAnon`` (/proc/PID/status: anonymous pages, the copy-on-write pages of
relocated libraries included), USS (Private_Clean + Private_Dirty of
/proc/PID/smaps_rollup) and PSS; the table gives their medians (steady state)
and the highest RssAnon seen. Not peak RSS: that counts shared library pages,
whose number depends on the page cache rather than on the process.

Also: the worker's import (``python -c 'import streamgrid.capture.__main__'``
less a bare interpreter, median of several), RssAnon after each import in the
order the worker makes them, and the time from the process's start to its
first sample. With ``--baseline-tree`` another checkout's worker runs beside
this one's (its extensions built in place).
"""

from __future__ import annotations

import contextlib
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .media import MediaSpec, generate
from .procstat import cpu_seconds
from .run import at_tree, machine

INTERVAL = 1.0
SPECS = (MediaSpec(720, "h264", 1), MediaSpec(1080, "h264", 1))
OURS = "streamgrid worker (pod)"
SKIP_NOKEY = "ffmpeg -skip_frame nokey"
DEMUX = "ffmpeg demux only (floor)"
# The modules the worker loads, in its order, for the per-import table; each
# line is RssAnon after that import (and those before it).
IMPORT_STEPS = (
    "av",
    "streamgrid.capture.settings",
    "streamgrid.capture.source",
    "streamgrid.capture.worker",
    "streamgrid.capture.__main__",
    # What a pod then loads as it starts: its status PATCHes, its S3 client.
    "streamgrid.capture.kube_progress",
    "streamgrid.core.stores.s3lite",
)
# What each stack costs a process on its own, over Python and PyAV (code to
# run after ``import av``): the stacks the worker loaded, and what it loads now.
STACKS = (
    ("numpy", "import numpy"),
    ("OpenCV (with NumPy)", "import cv2"),
    (
        "pydantic-settings, one settings class",
        _SETTINGS_CLASS := (
            "from pydantic_settings import BaseSettings\n"
            "class S(BaseSettings):\n    a: int = 1\n    b: str = 'x'\nS()"
        ),
    ),
    ("prometheus_client", "import prometheus_client"),
    ("Pillow, JPEG", "import PIL.Image, PIL.JpegImagePlugin; PIL.Image.preinit()"),
    ("ssl", "import ssl"),
    ("http.client", "import http.client"),
    ("http.server, after http.client", "import http.client\n#BASE\nimport http.server"),
    ("urllib.request, after http.client", "import http.client\n#BASE\nimport urllib.request"),
)


@dataclass(frozen=True)
class Memory:
    """One reading of a process, in MB (2**20 bytes)."""

    rss_anon: float
    uss: float
    pss: float


def read_memory(pid: int) -> Memory:
    rollup: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            rollup[name] = int(rest.split()[0])
    anon = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            anon = int(line.split()[1])
    uss = rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
    return Memory(anon / 1024, uss / 1024, rollup.get("Pss", 0) / 1024)


@dataclass
class Contender:
    name: str
    media: str
    argv: list[str]
    env: dict[str, str] | None = None
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    readings: list[Memory] = field(default_factory=list)
    cpu: float = 0.0  # % of a core over the window
    _window_start: tuple[float, float] = (0.0, 0.0)  # (monotonic, CPU seconds)

    def start(self, work: Path) -> None:
        self.log = work / f"{self.media}-{self.name.replace(' ', '_').replace('/', '_')}.log"
        with self.log.open("wb") as out:
            self.started = time.time()
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=out,
                env=self.env,
            )

    def read(self) -> None:
        assert self.process is not None and self.log is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-2000:]}")
        self.readings.append(read_memory(self.process.pid))
        now, used = time.monotonic(), cpu_seconds(self.process.pid)
        if not self._window_start[0]:
            self._window_start = (now, used)
        elif now > self._window_start[0]:
            self.cpu = 100 * (used - self._window_start[1]) / (now - self._window_start[0])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def events(self, event: str) -> list[float]:
        """Wall times of the worker's log lines for ``event`` (a sample's:
        when it was taken)."""
        assert self.log is not None
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if f'"{event}"' in line:
                with contextlib.suppress(ValueError, KeyError):
                    fields = json.loads(line)
                    found.append(float(fields.get("at", fields["ts"])))
        return found

    def median(self, what: str) -> float:
        return float(statistics.median(getattr(m, what) for m in self.readings))

    def highest_anon(self) -> float:
        return max(m.rss_anon for m in self.readings)


class _StatusApi(BaseHTTPRequestHandler):
    """kube-apiserver's answers to a capture pod: its status back."""

    protocol_version = "HTTP/1.1"

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # the status at start: a fresh stream
        self._answer(b'{"status": {}}')

    def do_PATCH(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        patch = json.loads(self.rfile.read(length) or b"{}")
        self._answer(json.dumps({"status": patch.get("status", {})}).encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def status_api(work: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS stand-in for kube-apiserver; yields (its URL, its CA file)."""
    from testbed.certs import make_certificates

    certs = make_certificates(work / "certs")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusApi)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", certs.ca
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Services:
    """What a capture pod talks to besides its camera."""

    api: str  # the API stand-in's URL
    ca: Path  # its CA
    token: Path
    store: dict[str, str]  # the S3 store's STREAMGRID_ variables


def pod_env(url: str, name: str, services: Services) -> dict[str, str]:
    """The environment the operator gives a capture pod (operator/podspec.py),
    pointed at this run's camera, store and API stand-in."""
    return {
        "PATH": "/usr/bin:/bin",
        "STREAMGRID_STREAM_ID": name,
        "STREAMGRID_SOURCE_URL": url,
        "STREAMGRID_CAPTURE_INTERVAL": str(INTERVAL),
        "STREAMGRID_TOP_K": "9",
        "STREAMGRID_GRID_AT_STOP": "true",
        **services.store,
        "STREAMGRID_PROGRESS": "kube",
        "STREAMGRID_PROGRESS_INTERVAL": "5",
        "STREAMGRID_KUBE_API_URL": services.api,
        "STREAMGRID_KUBE_NAMESPACE": "bench",
        "STREAMGRID_KUBE_NAME": name,
        "STREAMGRID_KUBE_TOKEN_FILE": str(services.token),
        "STREAMGRID_KUBE_CA_FILE": str(services.ca),
        "STREAMGRID_HEALTH_PORT": "0",
        "STREAMGRID_HEALTH_HOST": "127.0.0.1",
        "STREAMGRID_LOG_LEVEL": "DEBUG",  # a line per sample: when each was taken
    }


def contenders(url: str, media: str, services: Services, baseline: Path | None) -> list[Contender]:
    ff = ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url]
    worker = [sys.executable, "-m", "streamgrid.capture"]
    found = [Contender(OURS, media, worker, pod_env(url, f"m-{media}", services))]
    if baseline is not None:
        env = at_tree(pod_env(url, f"b-{media}", services), baseline)
        found.append(Contender(f"streamgrid at {baseline.name}", media, worker, env))
    nokey = [*ff[:-2], "-skip_frame", "nokey", *ff[-2:], "-vf", f"fps=1/{INTERVAL:g}"]
    found += [
        Contender(SKIP_NOKEY, media, [*nokey, "-f", "null", "-"]),
        Contender(DEMUX, media, [*ff, "-c", "copy", "-f", "null", "-"]),
    ]
    return found


def import_seconds(python: str, env: dict[str, str] | None, runs: int) -> tuple[float, float]:
    """(fastest, median) wall time of importing the worker, less a bare
    interpreter's start; on a shared machine the fastest is the steadier."""

    def times_of(code: str) -> list[float]:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([python, "-c", code], check=True, env=env)
            times.append(time.perf_counter() - started)
        return times

    bare, worker = times_of("pass"), times_of("import streamgrid.capture.__main__")
    return min(worker) - min(bare), statistics.median(worker) - statistics.median(bare)


_STEPS_CODE = """
import importlib, json, sys
def anon():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon:'):
            return int(line.split()[1]) / 1024
steps = [('python', anon())]
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    steps.append((name, anon()))
heavy = ('cv2', 'numpy', 'pydantic', 'pydantic_settings', 'prometheus_client', 'boto3', 'PIL')
steps.append(('loaded: ' + ' '.join(m for m in heavy if m in sys.modules), 0.0))
print(json.dumps(steps))
"""


_STACK_CODE = """
def anon():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon:'):
            return int(line.split()[1]) / 1024
import av
base = anon()
CODE
print(anon() - base)
"""


def stack_cost(code: str) -> float | None:
    """RssAnon a stack adds to a process that has Python and PyAV (and what
    comes before ``#BASE`` in ``code``); None where it is not installed."""
    before, _, after = code.rpartition("#BASE\n")
    script = _STACK_CODE.replace("import av\n", f"import av\n{before}").replace("CODE", after)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    return float(run.stdout) if run.returncode == 0 else None


def import_steps(env: dict[str, str] | None) -> list[tuple[str, float]]:
    out = subprocess.run(
        [sys.executable, "-c", _STEPS_CODE, *IMPORT_STEPS],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return [(str(name), float(mb)) for name, mb in json.loads(out)]


def run(cache: Path, warmup: float, window: float, baseline: Path | None) -> list[str]:
    from testbed.mediamtx import MediaMtx
    from testbed.s3 import start_s3

    seconds = int(warmup + window + 30)
    clips = {spec.name: generate(spec, seconds, cache) for spec in SPECS}
    results: list[Contender] = []
    started: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="streamgrid-memory-") as tmp:
        work = Path(tmp)
        server = MediaMtx(work, "memory-mediamtx").start()
        s3 = start_s3(work / "s3")
        try:
            s3.create_bucket("frames")
            token = work / "token"
            token.write_text("bench-token\n")
            with status_api(work) as (api, ca):
                services = Services(api, ca, token, s3.env("frames", "bench"))
                for name, clip in clips.items():
                    path = f"pub-{name}"
                    server.publish(path, clip)
                    print(f"{name}: warm-up {warmup:g} s, window {window:g} s", flush=True)
                    group = contenders(server.url(path), name, services, baseline)
                    try:
                        for contender in group:
                            contender.start(work)
                        time.sleep(warmup)
                        end = time.monotonic() + window
                        while time.monotonic() < end:
                            for contender in group:
                                contender.read()
                            time.sleep(1.0)
                    finally:
                        for contender in group:
                            contender.stop()
                    for contender in group:
                        anon, uss = contender.median("rss_anon"), contender.median("uss")
                        print(
                            f"  {contender.name:36s} RssAnon {anon:5.1f} (max "
                            f"{contender.highest_anon():5.1f})  USS {uss:5.1f}  PSS "
                            f"{contender.median('pss'):5.1f} MB  {contender.cpu:5.2f}% CPU",
                            flush=True,
                        )
                    results += group
                first = f"pub-{SPECS[0].name}"
                for contender in contenders(server.url(first), SPECS[0].name, services, baseline):
                    if contender.name.startswith("streamgrid"):
                        started[contender.name] = starts(contender, work, runs=3)
        finally:
            s3.process.stop()
            server.stop()
    return report(results, started, baseline, window)


def starts(contender: Contender, work: Path, runs: int) -> list[tuple[float, float]]:
    """The worker started alone, ``runs`` times: seconds from the process's
    start to its ``worker.starting`` line (Python, imports, settings, store,
    the status read) and to its first sample (then the connection, the wait
    for a keyframe and its decode)."""
    found = []
    for _ in range(runs):
        contender.start(work)
        deadline = time.monotonic() + 20
        while not contender.events("worker.sample") and time.monotonic() < deadline:
            time.sleep(0.05)
        contender.stop()
        ready, sampled = contender.events("worker.starting"), contender.events("worker.sample")
        if ready and sampled:
            found.append((ready[0] - contender.started, sampled[0] - contender.started))
    return found


def report(
    results: list[Contender],
    started: dict[str, list[tuple[float, float]]],
    baseline: Path | None,
    window: float,
) -> list[str]:
    lines = [
        f"mediamtx v1.14.0; H.264 High, GOP 1 s, 25 fps; interval {INTERVAL:g} s; "
        f"medians over a {window:g} s window after the warm-up; MB = 2^20 bytes.",
        "",
        "| stream | contender | RssAnon MB | highest RssAnon MB | USS MB | PSS MB | "
        "x ffmpeg -skip_frame nokey (RssAnon) | CPU % of a core |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for media in dict.fromkeys(r.media for r in results):
        group = [r for r in results if r.media == media]
        ffmpeg = next(r for r in group if r.name == SKIP_NOKEY).median("rss_anon")
        for r in group:
            lines.append(
                f"| {media} | {r.name} | {r.median('rss_anon'):.1f} | {r.highest_anon():.1f} | "
                f"{r.median('uss'):.1f} | {r.median('pss'):.1f} | "
                f"{r.median('rss_anon') / ffmpeg:.2f} | {r.cpu:.2f} |"
            )
    # (label, the contender's name, the environment that runs that tree)
    trees: list[tuple[str, str, dict[str, str] | None]] = [("this tree", OURS, None)]
    if baseline is not None:
        trees.append((baseline.name, f"streamgrid at {baseline.name}", at_tree({}, baseline)))
    lines += [
        "",
        f"Start, the worker alone on {SPECS[0].name} (medians of 3 starts), and its import "
        "(fastest and median of 7):",
        "",
        "| tree | import s | start to worker.starting s | start to first sample s |",
        "|---|---:|---:|---:|",
    ]
    for label, name, env in trees:
        fastest, median = import_seconds(sys.executable, _with_path(env), runs=7)
        runs = started.get(name, [])
        ready = f"{statistics.median(r for r, _ in runs):.2f}" if runs else "—"
        first = f"{statistics.median(f for _, f in runs):.2f}" if runs else "—"
        lines.append(f"| {label} | {fastest:.2f} / {median:.2f} | {ready} | {first} |")
    for label, _, env in trees:
        steps = import_steps(_with_path(env))
        lines += ["", f"RssAnon after each import ({label}):", ""]
        lines += ["| import | RssAnon MB | + MB |", "|---|---:|---:|"]
        previous = None
        for name, mb in steps:
            if name.startswith("loaded:"):
                lines += ["", f"Heavy modules then loaded ({label}): {name[7:].strip() or 'none'}"]
                continue
            added = "" if previous is None else f"{mb - previous:+.1f}"
            lines.append(f"| {name} | {mb:.1f} | {added} |")
            previous = mb
    lines += [
        "",
        "What each stack adds on its own to a process with Python and PyAV (RssAnon MB):",
        "",
        "| stack | + MB |",
        "|---|---:|",
    ]
    for label, code in STACKS:
        cost = stack_cost(code)
        lines.append(f"| {label} | {'—' if cost is None else f'{cost:.1f}'} |")
    return lines


def _with_path(env: dict[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    import os

    return {**os.environ, **env}


BEGIN, END = "<!-- worker-memory:begin -->", "<!-- worker-memory:end -->"


def write_markdown(path: Path, text: str, baseline: Path | None) -> None:
    """Replaces the section between the markers in docs/benchmarks.md."""
    command = "python -m bench --worker-memory" + (
        f" --baseline-tree <checkout of {baseline.name}>" if baseline else ""
    )
    block = f"{BEGIN}\nCommand: `{command}` on {machine()}\n\n{text}\n{END}"
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip() + "\n\n## A capture pod's memory\n\n" + block + "\n"
    path.write_text(new)


def main(
    cache: Path,
    short: bool,
    window: float | None,
    baseline: Path | None,
    markdown: Path | None = None,
) -> int:
    print(f"machine: {machine()}", flush=True)
    warmup = 6.0 if short else 12.0
    lines = run(cache, warmup, window or (6.0 if short else 30.0), baseline)
    print()
    print("\n".join(lines))
    if markdown is not None:
        write_markdown(markdown, "\n".join(lines), baseline)
    return 0
