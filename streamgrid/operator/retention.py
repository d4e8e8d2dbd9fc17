"""What deleting a VideoStream does to its data in the store.

A stream's frames, manifest and grids live under ``<store>/<namespace>/<name>/``
(podspec.store_url_for). Deleting the VideoStream, by hand or by its TTL,
deletes that prefix unless ``spec.dataRetention`` (else the operator's
``data_retention``) is ``Retain``. The operator's finalizer holds the
resource until it is done: first the capture pod is stopped (it would write
after the prefix was emptied), then the prefix is deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..core.logs import log_event
from ..core.store import FrameStore, store_error_text
from .podspec import pod_name, store_url_for
from .settings import OperatorSettings

log = logging.getLogger("streamgrid.operator")


def retains_data(spec: dict[str, Any], settings: OperatorSettings) -> bool:
    return str(spec.get("dataRetention") or settings.data_retention) == "Retain"


def namespace_store(settings: OperatorSettings, namespace: str) -> FrameStore:
    """The store as the namespace's capture pods see it (stream name = prefix)."""
    scoped = settings.model_copy(update={"store_url": store_url_for(settings.store_url, namespace)})
    return scoped.open_store()


def delete_stream_data(store: FrameStore, name: str) -> int:
    """Deletes everything under the stream's prefix; returns how many objects."""
    prefix = f"{name}/"
    count = sum(1 for _ in store.objects.list(prefix))
    store.delete_stream(name)
    return count


class StillRunning(RuntimeError):
    """The capture pod has not stopped yet: try again shortly."""


class DeletionApi(Protocol):
    def get_stream(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None: ...

    def event(self, stream: dict[str, Any], type_: str, reason: str, message: str) -> None: ...


def finish_deleted_stream(
    api: DeletionApi,
    settings: OperatorSettings,
    namespace: str,
    name: str,
    open_store: Callable[[OperatorSettings, str], FrameStore] = namespace_store,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Stops the capture pod and waits for it (it flushes, then would write
    no more), then deletes the stream's prefix unless retained. Raises
    StillRunning if the pod outlives its grace period, and the store's error
    if it fails (an Event says it)."""
    stream = api.get_stream(namespace, name)
    if stream is None:
        return
    pod = api.get_pod(namespace, pod_name(name))
    if pod is not None:
        if not pod["metadata"].get("deletionTimestamp"):
            api.delete_pod(namespace, pod_name(name), settings.termination_grace_seconds)
        deadline = clock() + settings.termination_grace_seconds + 10
        while api.get_pod(namespace, pod_name(name)) is not None:
            if clock() >= deadline:
                raise StillRunning(f"waiting for the capture pod {pod_name(name)} to stop")
            sleep(0.5)
    store = open_store(settings, namespace)
    where = f"{store.describe().rstrip('/')}/{name}/"
    if retains_data(stream.get("spec") or {}, settings):
        api.event(stream, "Normal", "DataRetained", f"kept the stream's data under {where}")
        log_event(log, "stream.data_retained", stream=name, namespace=namespace)
        return
    try:
        count = delete_stream_data(store, name)
    except Exception as exc:
        why = f"cannot delete the stream's data under {where}: {store_error_text(exc)}"
        api.event(stream, "Warning", "DataDeleteFailed", why + "; retrying")
        log_event(log, "stream.data_delete_failed", logging.WARNING, stream=name, why=why)
        raise
    api.event(stream, "Normal", "DataDeleted", f"deleted {count} objects under {where}")
    log_event(log, "stream.data_deleted", stream=name, namespace=namespace, objects=count)
