"""``python -m bench --fleet N[,N...]``: the cluster runtime's cost per stream.

Per size, on a fresh real control plane (etcd + kube-apiserver, as the tests
start them; watch cache off): the operator (this tree's, and with
``--baseline-tree`` an older tree's, side by side), the gateway (kube
backend), N VideoStreams created through the API, and a status-load
simulator that sends each stream's capture pod's real PATCH
(capture/kube_progress.status_of) at the pace the pod would: every
STREAMGRID_PROGRESS_INTERVAL seconds, or what the answer to its last PATCH
asks (status.progressIntervalSeconds). Pods stay Pending (no node).

Reported, per size and operator: time until every pod exists; over a steady
window, API requests a second by verb and resource (kube-apiserver's
``apiserver_request_total``) and watch events a second
(``apiserver_watch_events_total``); the operator's CPU and RSS; the
gateway's ``GET /list`` latency and size; and the time a restarted operator
takes to reconcile every stream again. Nothing is asserted: ``--short`` runs
in CI so the benchmark cannot rot.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import json
import multiprocessing
import multiprocessing.queues
import os
import queue
import random
import re
import ssl
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streamgrid.capture.kube_progress import requested_interval, status_of
from streamgrid.capture.progress import Progress
from streamgrid.core.models import StreamState
from streamgrid.operator.controller import FleetPacer
from testbed.cluster import install_crd
from testbed.kube import KubeCluster, start_cluster
from testbed.processes import ManagedProcess, free_port, wait_until

from .procstat import CpuWindow, private_mb

NAMESPACE = "fleet"
# What the API server counts of the product (not the benchmark's own polling,
# which stops during the window, nor /metrics itself).
PRODUCT_RESOURCES = ("videostreams", "pods", "secrets", "events", "leases")
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "CREATE", "UPDATE", "APPLY")
BUDGET_WRITES, BUDGET_READS = 50.0, 10.0  # issue 14's budget at 10,000 streams


@dataclass
class FleetResult:
    variant: str
    streams: int
    seconds_to_pods: float
    operator_rss_mb: float
    operator_private_mb: float
    operator_cpu_pct: float
    requests: dict[str, float] = field(default_factory=dict)  # "VERB resource" -> per second
    watch_events_per_s: float = 0.0
    list_ms: float = 0.0
    list_kb: float = 0.0
    gateway_rss_mb: float = 0.0
    restart_s: float | None = None
    pace_s: float | None = None
    simulator_behind_s: float = 0.0

    @property
    def writes(self) -> float:
        return sum(v for k, v in self.requests.items() if k.split()[0] in WRITE_VERBS)

    @property
    def reads(self) -> float:
        return sum(v for k, v in self.requests.items() if k.split()[0] not in WRITE_VERBS)


# -- the API server's own counts --------------------------------------------------
_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$")


def scrape(kube: KubeCluster) -> tuple[Counter[str], float]:
    """(requests by "VERB resource", watch events) so far."""
    request = urllib.request.Request(
        f"{kube.url}/metrics",
        headers={"Authorization": f"Bearer {kube.token_file.read_text().strip()}"},
    )
    context = ssl.create_default_context(cafile=str(kube.ca_file))
    with urllib.request.urlopen(request, context=context, timeout=30) as reply:
        text = reply.read().decode()
    requests: Counter[str] = Counter()
    events = 0.0
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if not found:
            continue
        name, labels, value = found.groups()
        tags = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if name == "apiserver_request_total" and tags.get("resource") in PRODUCT_RESOURCES:
            verb = tags.get("verb", "?")
            if verb == "WATCH":
                continue  # one long request per watcher, not a cost per event
            requests[f"{verb} {tags['resource']}"] += int(float(value))
        elif name == "apiserver_watch_events_total":
            events += float(value)
    return requests, events


# -- the capture pods' PATCHes ------------------------------------------------------
class StatusLoad:
    """Each stream's capture pod as the API server sees it: a state change
    at start, then counts every interval (jittered +-20 %), the interval
    taken from each answer as the real pod does. A few threads, keep-alive
    connections; ``behind`` says how late it ran (the server's limit)."""

    def __init__(self, kube: KubeCluster, names: list[str], interval: float, threads: int = 8):
        self.kube, self.names = kube, names
        parts = urlsplit(kube.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 443
        self.token = kube.token_file.read_text().strip()
        self.context = ssl.create_default_context(cafile=str(kube.ca_file))
        self.intervals = dict.fromkeys(names, interval)
        self.frames = dict.fromkeys(names, 0)
        now = time.monotonic()
        # Pods come up over the first few seconds, each with its first report.
        self.heap = [(now + random.uniform(0, 5), name) for name in names]
        heapq.heapify(self.heap)
        self.lock = threading.Condition()
        self.stop_flag = threading.Event()
        self.behind = 0.0
        self.sent = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> StatusLoad:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        with self.lock:
            self.lock.notify_all()
        for thread in self.threads:
            thread.join(10)

    def paces(self) -> list[float]:
        with self.lock:
            return list(self.intervals.values())

    def _run(self) -> None:
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context)
        while not self.stop_flag.is_set():
            with self.lock:
                while not self.stop_flag.is_set():
                    due, name = self.heap[0]
                    wait = due - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(self.heap)
                        self.behind = max(self.behind * 0.99, -wait)
                        break
                    self.lock.wait(min(wait, 0.5))
                else:
                    return
                self.frames[name] += max(1, int(self.intervals[name]))
                frames = self.frames[name]
            progress = Progress(StreamState.ACTIVE, frames, min(frames, 9), time.time())
            body = json.dumps({"status": status_of(progress)}).encode()
            path = f"/apis/streamgrid.io/v1alpha1/namespaces/{NAMESPACE}/videostreams/{name}/status"
            asked: float | None = None
            try:
                connection.request(
                    "PATCH",
                    path,
                    body,
                    {
                        "Content-Type": "application/merge-patch+json",
                        "Authorization": f"Bearer {self.token}",
                    },
                )
                reply = connection.getresponse()
                asked = requested_interval(reply.read())
                self.sent += 1
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPSConnection(self.host, self.port, context=self.context)
            with self.lock:
                spread = (0.8, 1.2)
                if asked is not None and asked != self.intervals[name]:
                    self.intervals[name] = asked
                    spread = (0.0, 1.0)  # as the pod: a new pace starts anywhere in it
                next_due = time.monotonic() + self.intervals[name] * random.uniform(*spread)
                heapq.heappush(self.heap, (next_due, name))
                self.lock.notify()


class ShardedStatusLoad:
    """StatusLoad in a few processes (a shard of the streams each): one
    Python process cannot send a baseline fleet's 200+ PATCHes a second."""

    def __init__(self, kube: KubeCluster, names: list[str], interval: float, shards: int = 4):
        context = multiprocessing.get_context("fork")
        self.stop_flag = context.Event()
        self.results: multiprocessing.queues.Queue[tuple[list[float], float]] = context.Queue()
        self.processes = [
            context.Process(
                target=_run_shard,
                args=(kube, names[index::shards], interval, self.stop_flag, self.results),
                daemon=True,
            )
            for index in range(shards)
        ]
        self.paces: list[float] = []
        self.behind = 0.0

    def start(self) -> ShardedStatusLoad:
        for process in self.processes:
            process.start()
        return self

    def stop(self) -> None:
        """Stops every shard; then ``paces`` and ``behind`` hold what they saw."""
        self.stop_flag.set()
        for _ in self.processes:
            with contextlib.suppress(queue.Empty):
                paces, behind = self.results.get(timeout=30)
                self.paces += paces
                self.behind = max(self.behind, behind)
        for process in self.processes:
            process.join(10)


def _run_shard(
    kube: KubeCluster,
    names: list[str],
    interval: float,
    stop_flag: Any,
    results: Any,
) -> None:
    load = StatusLoad(kube, names, interval).start()
    stop_flag.wait()
    paces = load.paces()
    load.stop()
    results.put((paces, load.behind))


# -- one size, one operator ----------------------------------------------------------
def _stream(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "streamgrid.io/v1alpha1",
        "kind": "VideoStream",
        "metadata": {"name": f"cam-{index:05d}"},
        "spec": {
            "source": {"url": f"rtsp://192.0.2.{index % 250 + 1}:554/stream{index}"},
            "captureInterval": 1,
            "topK": 9,
            "state": "Running",
            "dataRetention": "Retain",
        },
    }


def _count(kube: KubeCluster, kind: str) -> int:
    api = kube.api_client()
    from kubernetes import client

    if kind == "pods":
        page = client.CoreV1Api(api).list_namespaced_pod(NAMESPACE, limit=1, _preload_content=False)
    else:
        page = client.CustomObjectsApi(api).list_namespaced_custom_object(
            "streamgrid.io", "v1alpha1", NAMESPACE, "videostreams", limit=1, _preload_content=False
        )
    listing = json.loads(page.data)
    return len(listing["items"]) + int(listing["metadata"].get("remainingItemCount") or 0)


def _create_streams(kube: KubeCluster, count: int) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(kube.api_client())

    def create(index: int) -> None:
        custom.create_namespaced_custom_object(
            "streamgrid.io", "v1alpha1", NAMESPACE, "videostreams", _stream(index)
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(count)))


def _env(kube: KubeCluster, tree: Path | None, work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(kube.env())
    env.update(
        {
            "STREAMGRID_OPERATOR_NAMESPACE": NAMESPACE,
            "STREAMGRID_STORE_URL": "s3://fleet-bench/frames",
            "STREAMGRID_S3_ENDPOINT_URL": "http://127.0.0.1:9",  # never reached: Retain
            "STREAMGRID_S3_SECRET_NAME": "streamgrid-s3",
            "STREAMGRID_LIVENESS_HOST": "127.0.0.1",
            "STREAMGRID_LIVENESS_PORT": str(free_port()),
            "STREAMGRID_PROGRESS_INTERVAL_SECONDS": "5",  # the chart's default
            "STREAMGRID_LOG_LEVEL": "INFO",  # operator.resumed: the restart's time
            "PYTHONUNBUFFERED": "1",
        }
    )
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def _resumed_at(log_path: Path, since: int) -> float | None:
    """When the restarted operator said it had reconciled every stream it
    listed (operator.resumed), if it says so."""
    with log_path.open("rb") as log:
        log.seek(since)
        for line in log:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == "operator.resumed":
                    return float(record["ts"])
    return None


@contextlib.contextmanager
def _operator(env: dict[str, str], work: Path, cwd: Path | None) -> Iterator[ManagedProcess]:
    process = ManagedProcess(
        "operator", [sys.executable, "-m", "streamgrid.operator"], work / "operator.log", env, cwd
    ).start()
    try:
        url = f"http://127.0.0.1:{env['STREAMGRID_LIVENESS_PORT']}/healthz"
        process.wait_for_http(url, 120, "the operator's liveness endpoint")
        yield process
    finally:
        process.stop()


def measure(
    variant: str, tree: Path | None, count: int, work: Path, window: float, settle: float
) -> FleetResult:
    work.mkdir(parents=True, exist_ok=True)
    kube = start_cluster(work / "kube")
    try:
        install_crd(kube)
        kube.kubectl("create", "namespace", NAMESPACE)
        kube.kubectl(
            "-n",
            NAMESPACE,
            "create",
            "secret",
            "generic",
            "streamgrid-s3",
            "--from-literal=accessKeyId=bench",
            "--from-literal=secretAccessKey=bench-secret",
        )
        env = _env(kube, tree, work)
        cwd = tree
        gateway_env = {
            **env,
            "STREAMGRID_BACKEND": "kube",
            "STREAMGRID_KUBE_NAMESPACE": NAMESPACE,
            "STREAMGRID_STORE_URL": str(work / "gateway-data"),
            "STREAMGRID_MAX_STREAMS": str(count),
        }
        port = free_port()
        gateway = ManagedProcess(
            "gateway",
            [sys.executable, "-m", "streamgrid.cli", "serve", "--port", str(port)],
            work / "gateway.log",
            gateway_env,
            cwd,
        ).start()
        try:
            gateway.wait_for_http(f"http://127.0.0.1:{port}/healthz", 60, "the gateway")
            with _operator(env, work, cwd) as operator:
                started = time.monotonic()
                _create_streams(kube, count)
                wait_until(
                    lambda: _count(kube, "pods") >= count,
                    max(120.0, count * 0.2),
                    f"{count} capture pods",
                    step=1.0,
                )
                to_pods = time.monotonic() - started
                names = [f"cam-{i:05d}" for i in range(count)]
                load = ShardedStatusLoad(kube, names, interval=5.0).start()
                try:
                    time.sleep(settle)  # pods up; the fleet's pace (if any) taken up
                    before, events_before = scrape(kube)
                    cpu = CpuWindow(operator.pid)
                    cpu.start(time.monotonic())
                    time.sleep(window)
                    cpu_pct = cpu.percent(time.monotonic())
                    after, events_after = scrape(kube)
                    rss = _rss_mb(operator.pid)
                    private = private_mb(operator.pid)
                    list_ms, list_kb = _list_latency(f"http://127.0.0.1:{port}/list")
                finally:
                    load.stop()
                paces, behind = load.paces, load.behind
                offset = (work / "operator.log").stat().st_size
            restart = _restart_seconds(env, work, cwd, offset)
            requests = {
                key: (after[key] - before.get(key, 0)) / window
                for key in after
                if after[key] - before.get(key, 0) > 0
            }
            return FleetResult(
                variant=variant,
                streams=count,
                seconds_to_pods=to_pods,
                operator_rss_mb=rss,
                operator_private_mb=private,
                operator_cpu_pct=cpu_pct,
                requests=requests,
                watch_events_per_s=(events_after - events_before) / window,
                list_ms=list_ms,
                list_kb=list_kb,
                gateway_rss_mb=_rss_mb(gateway.pid),
                restart_s=restart,
                pace_s=statistics.median(paces) if paces else None,
                simulator_behind_s=behind,
            )
        finally:
            gateway.stop()
    finally:
        kube.stop()


def _restart_seconds(
    env: dict[str, str], work: Path, cwd: Path | None, offset: int
) -> float | None:
    """A fresh operator over the same fleet, from its start (imports, LISTs)
    until it has reconciled every stream; None for one that does not say
    (the baseline's: its per-stream daemons have no end to wait for)."""
    if cwd is not None:
        return None
    started = time.time()
    with _operator(env, work, cwd):
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            found = _resumed_at(work / "operator.log", offset)
            if found is not None:
                return found - started
            time.sleep(1.0)
    return None


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _list_latency(url: str, rounds: int = 7) -> tuple[float, float]:
    timings, size = [], 0
    for _ in range(rounds):
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as reply:
            size = len(reply.read())
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings), size / 1024


# -- the report -------------------------------------------------------------------------
def table(results: list[FleetResult]) -> str:
    rows = [
        "| operator | streams | s to all pods | writes/s | reads/s | watch events/s "
        "| operator CPU % | operator RSS MiB | restart s | /list ms (KB) | count period s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        restart = f"{r.restart_s:.1f}" if r.restart_s is not None else "n/a"
        pace = f"{r.pace_s:g}" if r.pace_s is not None else "n/a"
        rows.append(
            f"| {r.variant} | {r.streams:,} | {r.seconds_to_pods:.1f} | {r.writes:.1f} "
            f"| {r.reads:.1f} | {r.watch_events_per_s:.1f} | {r.operator_cpu_pct:.1f} "
            f"| {r.operator_rss_mb:.0f} | {restart} | {r.list_ms:.0f} ({r.list_kb:.0f}) | {pace} |"
        )
    return "\n".join(rows)


def details(results: list[FleetResult]) -> str:
    lines = []
    for r in results:
        verbs = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r.requests.items()))
        lines.append(
            f"- {r.variant}, {r.streams:,} streams: {verbs or 'no requests'}; "
            f"simulator lag {r.simulator_behind_s:.1f} s; gateway RSS {r.gateway_rss_mb:.0f} MiB; "
            f"operator private {r.operator_private_mb:.0f} MiB"
        )
    return "\n".join(lines)


def budget_line(result: FleetResult) -> str:
    met = result.writes <= BUDGET_WRITES and result.reads <= BUDGET_READS
    return (
        f"API budget at {result.streams:,} streams ({result.variant}): "
        f"{result.writes:.1f} writes/s (budget {BUDGET_WRITES:g}), "
        f"{result.reads:.1f} reads/s (budget {BUDGET_READS:g}): {'met' if met else 'NOT met'}"
    )


def run_fleet(
    sizes: list[int],
    work: Path,
    baseline: Path | None,
    baseline_sizes: list[int],
    window: float,
    settle: float,
) -> list[FleetResult]:
    results: list[FleetResult] = []
    for size in sizes:
        runs: list[tuple[str, Path | None]] = [("this tree", None)]
        if baseline is not None and size in baseline_sizes:
            runs.insert(0, ("baseline", baseline))
        # Until every pod reports at the fleet's pace: two periods of the slowest
        # pace a pod may have been given while the fleet grew.
        pace = FleetPacer(5.0, 40.0).period_for(size)
        settle_s = max(settle, 2.1 * pace)  # two periods: every pod on the new pace
        # A whole period at least: the average of N reports a period, whatever
        # their phase (a 90-s window of a 300-s period could catch a burst).
        window_s = window if window < 60 else max(window, pace)
        for variant, tree in runs:
            print(f"fleet: {size} streams, {variant} (settle {settle_s:.0f} s) ...", flush=True)
            result = measure(
                variant,
                tree,
                size,
                work / f"{size}-{variant.replace(' ', '-')}",
                window_s,
                settle_s,
            )
            results.append(result)
            print(table([result]).splitlines()[-1], flush=True)
    return results
