"""``python -m streamgrid.capture``: the worker process (embedded child, or pod).

SIGTERM/SIGINT stop it gracefully: kept frames and a final manifest are flushed
and it exits 0 (3 when the camera refused us for good, 2 on invalid settings,
1 on a crash).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ..core.crd_names import WorkerExit
from ..core.logs import configure_logging, log_event, register_secret
from ..core.models import StreamState
from ..core.urls import mask_url, url_secrets
from .health import HealthServer, stale_after
from .metrics import worker_exposition
from .progress import JsonLinesProgress, NoProgress, ProgressSink
from .settings import CaptureSettings, SettingsError
from .worker import CaptureWorker

log = logging.getLogger("streamgrid.capture")
# Where a pod's container leaves its last words: the kubelet copies this file
# into the container status (state.terminated.message), where the operator
# can read why the worker gave up. Only written where it exists (in a pod).
TERMINATION_LOG = Path("/dev/termination-log")


def leave_termination_message(message: str) -> None:
    if TERMINATION_LOG.is_file():
        with contextlib.suppress(OSError):
            TERMINATION_LOG.write_text(message[:4096], encoding="utf-8")


_PR_SET_PDEATHSIG = 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters
MMAP_THRESHOLD = 512 * 1024
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # as glibc's own rule for a threshold it moves


def return_freed_memory() -> bool:
    """glibc's malloc, set for a process that holds little and now and then
    a picture: blocks from 512 KB up (the RGB copies of a kept frame, 6 and
    8 MB at 1080p) are mapped on their own and given back when freed, and all
    threads share one arena. glibc's defaults move the threshold up to the
    largest block freed, so those copies stayed in the heap, and give each
    thread an arena of its own: 26 to 40 MB of private memory at 1080p for
    what is 25 (bench --worker-memory). At 256 KB a 720p sample's packet
    copies were mapped anew too (120 page faults, 0.4 ms a sample on this
    machine). False where the C library has no mallopt (musl)."""
    try:
        libc = ctypes.CDLL(None)
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            and libc.mallopt(_M_ARENA_MAX, 1)
        )
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int) -> bool:
    """SIGTERM to us when the process that spawned us dies; False when it
    already has. Done here, after exec, rather than in a preexec_fn: code run
    between fork and exec in a threaded server can deadlock."""
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # Checked after asking: a parent that died in between has re-parented us.
    return os.getppid() == parent_pid


def make_progress(settings: CaptureSettings) -> ProgressSink:
    if settings.progress == "stdout":
        return JsonLinesProgress()
    if settings.progress == "none":
        return NoProgress()
    from .kube_progress import KubeStatusProgress, StatusEndpoint, frames_captured_floor

    api = settings.kube_api_url
    if not api:
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        api = f"https://{host}:{port}"
    if not settings.kube_namespace or not settings.kube_name:
        raise ValueError("progress=kube needs STREAMGRID_KUBE_NAMESPACE and STREAMGRID_KUBE_NAME")
    endpoint = StatusEndpoint(
        api,
        settings.kube_namespace,
        settings.kube_name,
        settings.kube_token_file,
        settings.kube_ca_file,
    )
    # A restarted pod continues the count its status already shows (read
    # before the worker restores from the store).
    settings.frames_captured_floor = max(
        settings.frames_captured_floor, frames_captured_floor(endpoint)
    )
    return KubeStatusProgress(endpoint, settings.progress_interval)


def start_health(settings: CaptureSettings, worker: CaptureWorker) -> HealthServer | None:
    """The liveness endpoint when STREAMGRID_HEALTH_PORT is set. A port that
    cannot be bound is logged, not fatal: capture matters more than the probe."""
    if settings.health_port is None:
        return None
    limit = stale_after(settings)
    try:
        health = HealthServer(
            settings.health_host,
            settings.health_port,
            worker.heartbeat,
            limit,
            worker_exposition(settings.stream_id, worker.metrics),
        )
    except OSError as exc:
        log_event(log, "worker.health_unavailable", logging.WARNING, error=str(exc))
        return None
    log_event(log, "worker.health", port=health.port, stale_after=limit)
    return health.start()


def main() -> int:
    return_freed_memory()  # before any thread starts or picture is decoded
    configure_logging("capture")
    try:
        settings = CaptureSettings()
    except SettingsError as exc:
        errors = str(exc)  # each field's rule, never its value (which may be a secret)
        log_event(log, "worker.bad_settings", logging.ERROR, errors=errors)
        leave_termination_message(f"bad settings: {errors}")
        return WorkerExit.BAD_SETTINGS
    if settings.parent_pid is not None and not die_with_parent(settings.parent_pid):
        log_event(log, "worker.orphaned", logging.WARNING, stream_id=settings.stream_id)
        return WorkerExit.STOPPED
    url = settings.camera_url()
    register_secret(*url_secrets(url))
    for secret in (settings.source_password, settings.source_full_url):
        if secret is not None:
            register_secret(secret.get_secret_value())
    logging.getLogger().setLevel(settings.log_level.upper())
    progress = make_progress(settings)
    worker = CaptureWorker(settings, settings.open_store(), progress)
    health = start_health(settings, worker)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log_event(log, "worker.stopping", stream_id=settings.stream_id, signal=signum)
        stop.set()
        worker.interrupt()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log_event(
        log,
        "worker.starting",
        stream_id=settings.stream_id,
        url=mask_url(url),
        interval=settings.capture_interval,
        top_k=settings.top_k,
        transport=settings.rtsp_transport,
        store=worker.store.describe(),
    )

    result: dict[str, int] = {}

    def body() -> None:
        try:
            result["code"] = worker.run(stop)
        except Exception:  # a bug: logged with its traceback, and the exit code says so
            log.exception("worker.crashed", extra={"fields": {"stream_id": settings.stream_id}})
            result["code"] = WorkerExit.CRASHED

    thread = threading.Thread(target=body, name="capture", daemon=True)
    thread.start()
    # The main thread stays free for signals; a read blocked on a dead camera
    # must not hold up a stop longer than the read timeout.
    while thread.is_alive() and not stop.is_set():
        thread.join(0.5)
    if stop.is_set():
        thread.join(settings.read_timeout + 1.0)
        worker.finish(StreamState.STOPPED)
    progress.close()
    if health is not None:
        health.close()
    return result.get("code", WorkerExit.STOPPED if stop.is_set() else WorkerExit.CRASHED)


if __name__ == "__main__":
    sys.exit(main())
