"""``python -m streamgrid.capture``: the worker process (embedded child, or pod).

SIGTERM/SIGINT stop it gracefully: kept frames and a final manifest are flushed
and it exits 0 (3 when the camera refused us for good, 1 on a crash).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from pydantic import ValidationError

from ..core.logs import configure_logging, log_event, register_secret
from ..core.models import StreamState
from ..core.urls import mask_url, url_secrets
from .progress import JsonLinesProgress, NoProgress, ProgressSink
from .settings import CaptureSettings
from .worker import EXIT_CRASHED, EXIT_STOPPED, CaptureWorker

log = logging.getLogger("streamgrid.capture")


def main() -> int:
    configure_logging("capture")
    try:
        settings = CaptureSettings()
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        log_event(log, "worker.bad_settings", logging.ERROR, errors=errors)
        return 2
    url = settings.source_url.get_secret_value()
    register_secret(*url_secrets(url))
    logging.getLogger().setLevel(settings.log_level.upper())
    progress: ProgressSink = JsonLinesProgress() if settings.progress == "stdout" else NoProgress()
    worker = CaptureWorker(settings, settings.open_store(), progress)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log_event(log, "worker.stopping", stream_id=settings.stream_id, signal=signum)
        stop.set()

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
        except Exception:
            log.exception("worker.crashed", extra={"fields": {"stream_id": settings.stream_id}})
            result["code"] = EXIT_CRASHED

    thread = threading.Thread(target=body, name="capture", daemon=True)
    thread.start()
    # The main thread stays free for signals; a read blocked on a dead camera
    # must not hold up a stop longer than the read timeout.
    while thread.is_alive() and not stop.is_set():
        thread.join(0.5)
    if stop.is_set():
        thread.join(settings.read_timeout + 1.0)
        worker.finish(StreamState.STOPPED)
        return result.get("code", EXIT_STOPPED)
    return result.get("code", EXIT_CRASHED)


if __name__ == "__main__":
    sys.exit(main())
