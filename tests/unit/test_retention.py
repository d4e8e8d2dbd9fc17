"""Deleting a stream never hangs: no waiting inline, a bounded total time, an
annotation that leaves the data; and the delete handler and reconciles take
turns on one stream."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest

from streamgrid.core.crd import FINALIZER
from streamgrid.core.models import FrameRecord
from streamgrid.core.stores.base import StoreError
from streamgrid.core.stores.directory import DirectoryObjectStore
from streamgrid.core.stores.frames import FrameStore
from streamgrid.operator import controller
from streamgrid.operator.retention import (
    SKIP_DATA_DELETE_ANNOTATION,
    StillRunning,
    finish_deleted_stream,
)
from streamgrid.operator.settings import OperatorSettings
from streamgrid.operator.workqueue import WorkQueue

SETTINGS = OperatorSettings(store_url="s3://bucket/frames", s3_secret_name="sg-s3")
POD = {"metadata": {"name": "cam-capture", "deletionTimestamp": "2026-11-29T00:00:00Z"}}


class Api:
    def __init__(self, pod: dict[str, Any] | None = None, **annotations: str) -> None:
        self.stream = {
            "metadata": {"name": "cam", "namespace": "cams", "annotations": annotations},
            "spec": {"source": {"url": "rtsp://cam/x"}},
        }
        self.pod = pod
        self.deleted: list[str] = []
        self.events: list[tuple[str, str, str]] = []

    def get_stream(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.stream

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pod

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None:
        self.deleted.append(name)

    def event(self, stream: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


@pytest.fixture
def store(tmp_path: Path) -> FrameStore:
    frames = FrameStore(DirectoryObjectStore(tmp_path))
    frames.put_frame("cam", FrameRecord(1, 100.0, 1.0), b"jpeg")
    return frames


class BrokenObjects:
    def list(self, prefix: str) -> list[str]:
        raise StoreError("connection refused")


class BrokenStore:
    objects = BrokenObjects()

    def describe(self) -> str:
        return "s3://bucket/frames/cams"

    def delete_stream(self, name: str) -> None:
        raise StoreError("connection refused")


def broken_store(_settings: OperatorSettings, _namespace: str) -> FrameStore:
    return cast(FrameStore, BrokenStore())


DELETING: dict[str, Any] = {
    "metadata": {
        "name": "cam",
        "namespace": "cams",
        "deletionTimestamp": "2026-01-01T00:00:00Z",
        "finalizers": [FINALIZER],
    }
}


def test_a_pod_stuck_terminating_is_not_waited_for_inline(store: FrameStore) -> None:
    api = Api(pod=POD)
    started = time.monotonic()
    with pytest.raises(StillRunning, match="cam-capture"):
        finish_deleted_stream(api, SETTINGS, "cams", "cam", lambda _s, _n: store, elapsed=5)
    assert time.monotonic() - started < 1  # Kopf calls again; no sleeping in its thread
    assert store.list_frames("cam")


def test_after_the_timeout_the_data_is_left_and_the_finalizer_released(
    store: FrameStore,
) -> None:
    api = Api(pod=POD)
    timeout = SETTINGS.data_delete_timeout_seconds
    finish_deleted_stream(api, SETTINGS, "cams", "cam", lambda _s, _n: store, elapsed=timeout)
    assert [(t, r) for t, r, _ in api.events] == [("Warning", "DataDeleteAbandoned")]
    assert "s3://bucket/frames/cams/cam/" in api.events[0][2]
    assert store.list_frames("cam")
    failing = Api()
    with pytest.raises(OSError):
        finish_deleted_stream(failing, SETTINGS, "cams", "cam", broken_store)
    # A store that keeps failing: given up on.
    finish_deleted_stream(failing, SETTINGS, "cams", "cam", broken_store, elapsed=timeout)
    assert [r for _, r, _ in failing.events] == ["DataDeleteFailed", "DataDeleteAbandoned"]
    assert "s3://bucket/frames/cams/cam/" in failing.events[1][2]


def test_the_skip_annotation_releases_at_once_leaving_the_data(store: FrameStore) -> None:
    api = Api(pod=POD, **{SKIP_DATA_DELETE_ANNOTATION: "true"})
    finish_deleted_stream(api, SETTINGS, "cams", "cam", lambda _s, _n: store)
    assert store.list_frames("cam")
    assert [(t, r) for t, r, _ in api.events] == [("Warning", "DataDeleteAbandoned")]


def test_a_pod_that_appears_after_the_data_went_is_deleted_and_retried(
    store: FrameStore,
) -> None:
    api = Api()

    class Racing(FrameStore):
        def delete_stream(self, stream_id: str) -> None:
            super().delete_stream(stream_id)
            api.pod = {"metadata": {"name": "cam-capture"}}  # a late reconcile's pod

    racing = Racing(store.objects)
    with pytest.raises(StillRunning):
        finish_deleted_stream(api, SETTINGS, "cams", "cam", lambda _s, _n: racing)
    assert api.deleted == ["cam-capture"]
    assert "DataDeleted" not in [r for _, r, _ in api.events]


def test_the_deletion_waits_for_a_reconcile_of_the_same_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The finalizer is the controller's now (two replicas: no Kopf handler
    may write); its deletion still waits for a reconcile under way."""
    order: list[str] = []
    inside, leave = threading.Event(), threading.Event()

    def slow_reconcile(*_: Any, **__: Any) -> None:
        inside.set()
        leave.wait(5)
        order.append("reconcile")

    def finish(*_: Any, **__: Any) -> None:
        order.append("delete")

    monkeypatch.setattr(controller, "reconcile", slow_reconcile)
    monkeypatch.setattr(controller, "finish_deleted_stream", finish)
    engine = controller.Controller(cast("Any", None), SETTINGS)
    monkeypatch.setattr(engine.reads, "remove_finalizer", lambda _stream: None)
    first = threading.Thread(target=engine.reconcile_now, args=(("cams", "cam"),))
    first.start()
    assert inside.wait(5)
    deleting = threading.Thread(target=engine._finish_deletion, args=(("cams", "cam"), DELETING))
    deleting.start()
    time.sleep(0.2)
    leave.set()
    first.join(5)
    deleting.join(5)
    assert order == ["reconcile", "delete"]
    assert controller._stream_locks == {}  # nothing kept once nobody holds or waits


def test_a_lock_is_never_dropped_while_someone_waits_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    running, overlap = [0], [False]
    gates = [threading.Event() for _ in range(3)]
    calls = iter(gates)
    guard = threading.Lock()

    def gone_stream(*_: Any, **__: Any) -> None:  # the stream is going: reconcile returns None
        gate = next(calls)
        with guard:
            running[0] += 1
            overlap[0] |= running[0] > 1
        gate.wait(2)
        with guard:
            running[0] -= 1

    monkeypatch.setattr(controller, "reconcile", gone_stream)
    engine = controller.Controller(cast("Any", None), SETTINGS)
    key = ("cams", "cam")
    threads = [threading.Thread(target=engine.reconcile_now, args=(key,)) for _ in range(3)]
    threads[0].start()
    time.sleep(0.1)
    threads[1].start()  # waits on the first's lock
    time.sleep(0.1)
    gates[0].set()  # the first ends; the second takes the lock
    time.sleep(0.1)
    threads[2].start()  # must wait for the second, not get a fresh lock
    time.sleep(0.2)
    for gate in gates:
        gate.set()
    for thread in threads:
        thread.join(5)
    assert not overlap[0]


def test_a_deletion_waiting_on_its_pod_is_tried_again_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def still(*_: Any, **__: Any) -> None:
        raise StillRunning("waiting for the capture pod cam-capture to stop")

    monkeypatch.setattr(controller, "finish_deleted_stream", still)
    clock = [100.0]
    engine = controller.Controller(cast("Any", None), SETTINGS)
    engine.queue = WorkQueue(clock=lambda: clock[0])
    engine._finish_deletion(("cams", "cam"), DELETING)
    assert engine.queue.idle() and len(engine.queue) == 0  # not at once: no busy loop
    clock[0] += controller.DELETION_RECHECK_SECONDS
    assert engine.queue.get() == ("cams", "cam")
    assert controller.DELETION_RECHECK_SECONDS > 0
