"""What deleting a VideoStream does to its data in the store.

A stream's frames, manifest and grids live under ``<store>/<namespace>/<name>/``
(podspec.store_url_for). Deleting the VideoStream, by hand or by its TTL,
deletes that prefix unless ``spec.dataRetention`` (else the operator's
``data_retention``) is ``Retain``. The operator's finalizer holds the
resource until it is done: first the capture pod is stopped (it would write
after the prefix was emptied), then the prefix is deleted, then the pod is
looked for once more (a reconcile that began before the deletion may have
made one: it is deleted and the whole is tried again).

Nothing waits inline: while the pod is stopping, or the store fails, the
controller looks again later (its work queue). Deletion never hangs (nor ``kubectl
delete namespace``): after ``data_delete_timeout_seconds`` (default 600) in
all (60 s by default), a pod stuck Terminating (its node gone) or a store that keeps failing
is given up on: the finalizer is released and a Warning Event
(``DataDeleteAbandoned``) says the data under the prefix was left. The
annotation ``streamgrid.io/skip-data-delete: "true"`` releases it at once,
leaving the data (the same Event).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol

from ..core import crd
from ..core.logs import log_event
from ..core.stores.base import StoreError, store_error_text
from ..core.stores.frames import FrameStore
from .podspec import pod_name, store_url_for
from .settings import OperatorSettings

log = logging.getLogger("streamgrid.operator")

SKIP_DATA_DELETE_ANNOTATION = crd.SKIP_DATA_DELETE_ANNOTATION
# What became of a deleted stream's data.
Outcome = Literal["deleted", "retained", "skipped", "abandoned", "gone"]


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


def _abandon(api: DeletionApi, stream: dict[str, Any], where: str, why: str) -> None:
    """Releases the finalizer without the data: a Warning Event says where it is."""
    meta = stream["metadata"]
    message = f"left the stream's data under {where} ({why}); delete it by hand if unwanted"
    api.event(stream, "Warning", "DataDeleteAbandoned", message)
    log_event(
        log,
        "stream.data_delete_abandoned",
        logging.WARNING,
        stream=meta.get("name"),
        namespace=meta.get("namespace"),
        why=why,
    )


class DeletionApi(Protocol):
    def get_stream(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> object: ...

    def event(self, stream: dict[str, Any], type_: str, reason: str, message: str) -> None: ...


def finish_deleted_stream(
    api: DeletionApi,
    settings: OperatorSettings,
    namespace: str,
    name: str,
    open_store: Callable[[OperatorSettings, str], FrameStore] = namespace_store,
    elapsed: float = 0.0,
) -> Outcome:
    """Stops the capture pod (it flushes, then would write no more), then
    deletes the stream's prefix unless retained. ``elapsed``: seconds since
    the first try. Raises StillRunning while the pod is there, and the
    store's error if it fails (an Event says it), until
    ``data_delete_timeout_seconds`` have passed: then, or at once with the
    skip annotation, it returns leaving the data (DataDeleteAbandoned).
    Returns what became of the data."""
    stream = api.get_stream(namespace, name)
    if stream is None:
        return "gone"
    annotations = stream["metadata"].get("annotations") or {}
    timed_out = elapsed >= settings.data_delete_timeout_seconds
    fallback = f"{store_url_for(settings.store_url, namespace)}/{name}/"
    if str(annotations.get(SKIP_DATA_DELETE_ANNOTATION, "")).lower() == "true":
        _abandon(api, stream, fallback, f"annotation {SKIP_DATA_DELETE_ANNOTATION}")
        return "skipped"
    pod = api.get_pod(namespace, pod_name(name))
    if pod is not None:
        if not pod["metadata"].get("deletionTimestamp"):
            api.delete_pod(namespace, pod_name(name), settings.termination_grace_seconds)
        if timed_out:
            why = f"the capture pod {pod_name(name)} did not stop in {elapsed:.0f} s"
            _abandon(api, stream, fallback, why)
            return "abandoned"
        raise StillRunning(f"waiting for the capture pod {pod_name(name)} to stop")
    try:
        store = open_store(settings, namespace)
    except StoreError as exc:
        if timed_out:
            _abandon(api, stream, fallback, f"the store failed: {store_error_text(exc)}")
            return "abandoned"
        raise
    where = f"{store.describe().rstrip('/')}/{name}/"
    if retains_data(stream.get("spec") or {}, settings):
        api.event(stream, "Normal", "DataRetained", f"kept the stream's data under {where}")
        log_event(log, "stream.data_retained", stream=name, namespace=namespace)
        return "retained"
    try:
        count = delete_stream_data(store, name)
    except StoreError as exc:
        if timed_out:
            _abandon(api, stream, where, f"the store failed: {store_error_text(exc)}")
            return "abandoned"
        why = f"cannot delete the stream's data under {where}: {store_error_text(exc)}"
        api.event(
            stream,
            "Warning",
            "DataDeleteFailed",
            f"{why}; retrying, for {settings.data_delete_timeout_seconds:g} s in all",
        )
        log_event(log, "stream.data_delete_failed", logging.WARNING, stream=name, why=why)
        raise
    if api.get_pod(namespace, pod_name(name)) is not None:
        # A reconcile that read the stream before its deletion made a pod: it
        # may have written after the prefix was emptied. Stop it; go again.
        api.delete_pod(namespace, pod_name(name), settings.termination_grace_seconds)
        raise StillRunning(f"a capture pod {pod_name(name)} appeared; deleting the data again")
    api.event(stream, "Normal", "DataDeleted", f"deleted {count} objects under {where}")
    log_event(log, "stream.data_deleted", stream=name, namespace=namespace, objects=count)
    return "deleted"
