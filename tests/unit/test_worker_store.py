"""CaptureWorker under store faults: kept frames the store refuses stay in
memory (at most K), are retried with backoff, and are never counted as kept
until stored. The store is a fake that fails on demand; the pictures are real
decoded-frame objects."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator

import av
import numpy as np
from botocore.exceptions import EndpointConnectionError

from streamgrid.capture.decoding import Picture
from streamgrid.capture.progress import Progress
from streamgrid.capture.settings import CaptureSettings
from streamgrid.capture.worker import STORE_RETRY_INITIAL, STORE_RETRY_MAX, CaptureWorker
from streamgrid.core.models import StreamState
from streamgrid.core.stores.base import ObjectStore, StoreError, store_error_text
from streamgrid.core.stores.frames import FrameStore


class FlakyObjects(ObjectStore):
    """Objects in a dict; while ``failing`` is set, writes of frames (or of
    everything, with ``fail_all``) fail as the directory store does on a full
    disk: StoreError, ENOSPC's reason."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.failing = False
        self.fail_all = True
        self.frame_puts = 0

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if "/frames/" in key:
            self.frame_puts += 1
        if self.failing and (self.fail_all or "/frames/" in key):
            raise StoreError(os.strerror(errno.ENOSPC))
        self.objects[key] = data

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def list(self, prefix: str) -> Iterator[str]:
        yield from sorted(k for k in self.objects if k.startswith(prefix))


class Reports:
    def __init__(self) -> None:
        self.reports: list[Progress] = []

    def report(self, progress: Progress) -> None:
        self.reports.append(progress)

    def close(self, timeout: float = 10.0) -> None:
        pass

    def last(self) -> Progress:
        return self.reports[-1]


def picture(level: int) -> Picture:
    gray = np.full((48, 64), level, dtype=np.uint8)
    return Picture(av.VideoFrame.from_ndarray(gray, format="gray"))


def make_worker(top_k: int = 3) -> tuple[CaptureWorker, FlakyObjects, FrameStore, Reports]:
    objects = FlakyObjects()
    store = FrameStore(objects)
    reports = Reports()
    settings = CaptureSettings(
        stream_id="s", source_url="rtsp://127.0.0.1:9/x", top_k=top_k, progress="none"
    )
    worker = CaptureWorker(settings, store, reports)
    worker.state = StreamState.ACTIVE
    return worker, objects, store, reports


def stored_seqs(store: FrameStore) -> set[int]:
    return {r.seq for r in store.list_frames("s")}


def test_a_full_store_shows_in_the_reason_and_kept_counts_only_stored_frames() -> None:
    worker, objects, store, reports = make_worker(top_k=3)
    worker.sample(picture(100))
    objects.failing = True
    worker.sample(picture(120))
    worker.sample(picture(140))
    last = reports.last()
    assert last.state == StreamState.ACTIVE  # capture goes on
    assert last.reason == "store: No space left on device"
    assert last.store_error == "No space left on device"
    assert (last.kept, last.unsaved) == (1, 2) == (len(stored_seqs(store)), len(worker.unsaved))

    objects.failing = False
    worker.sample(picture(10))  # a new frame that does not enter: the retry is due later
    assert reports.last().unsaved == 2
    worker._store_retry_at = 0.0  # as when the backoff has passed
    worker.sample(picture(10))
    last = reports.last()
    assert (last.kept, last.unsaved, last.reason, last.store_error) == (3, 0, "", "")
    assert stored_seqs(store) == {0, 1, 2}


def test_a_stored_new_frame_means_the_store_is_back_and_the_rest_follow_at_once() -> None:
    worker, objects, store, reports = make_worker(top_k=5)
    objects.failing = True
    for level in (100, 110, 120):
        worker.sample(picture(level))
    objects.failing = False
    worker.sample(picture(130))  # stored: the three held frames are retried now
    assert (reports.last().kept, reports.last().unsaved) == (4, 0)
    assert stored_seqs(store) == {0, 1, 2, 3}


def test_unsaved_frames_are_bounded_by_k_evicted_ones_are_dropped() -> None:
    worker, objects, store, reports = make_worker(top_k=3)
    objects.failing = True
    for level in range(50, 250, 10):  # 20 frames, each brighter: each evicts one
        worker.sample(picture(level))
    assert len(worker.unsaved) == 3
    assert sorted(r.seq for r in worker.unsaved) == [17, 18, 19]  # the top 3, nothing else
    objects.failing = False
    worker._store_retry_at = 0.0
    worker.sample(picture(0))
    assert stored_seqs(store) == {17, 18, 19}
    assert reports.last().kept == 3


def test_retries_back_off_and_new_failures_do_not_push_them_back() -> None:
    worker, objects, _, _ = make_worker(top_k=100)
    objects.failing = True
    worker.sample(picture(100))
    first_due = worker._store_retry_at
    assert 0.8 * STORE_RETRY_INITIAL <= first_due - time.monotonic() <= 1.2 * STORE_RETRY_INITIAL
    for level in (101, 102, 103):  # more refusals before the retry is due
        worker.sample(picture(level))
    assert worker._store_retry_at == first_due
    puts = objects.frame_puts
    for _ in range(20):  # the capture loop asks on every packet: nothing until due
        worker._retry_if_due()
    assert objects.frame_puts == puts

    delays = []
    for _ in range(8):  # each due retry stops at its first refused put, and waits longer
        worker._store_retry_at = 0.0
        before = objects.frame_puts
        worker._retry_if_due()
        assert objects.frame_puts == before + 1
        delays.append(worker._store_retry_at - time.monotonic())
    expected = [min(STORE_RETRY_MAX, STORE_RETRY_INITIAL * 2**n) for n in range(1, 9)]
    for delay, nominal in zip(delays, expected, strict=True):
        assert 0.75 * nominal <= delay <= 1.2 * nominal, (delays, expected)


def test_a_due_retry_runs_between_samples_for_long_intervals() -> None:
    worker, objects, store, reports = make_worker(top_k=3)
    objects.failing = True
    worker.sample(picture(100))
    objects.failing = False
    worker._store_retry_at = 0.0
    worker._retry_if_due()  # what the capture loop calls on every packet
    assert stored_seqs(store) == {0}
    assert (reports.last().kept, reports.last().reason) == (1, "")


def test_the_manifest_never_lists_unsaved_frames() -> None:
    worker, objects, store, _ = make_worker(top_k=3)
    worker.sample(picture(100))
    objects.failing, objects.fail_all = True, False  # frames refused, the manifest written
    worker.sample(picture(150))
    worker._write_manifest(final=False)
    manifest = store.get_manifest("s")
    assert manifest is not None
    assert [r.seq for r in manifest.kept] == [0]


def test_a_stop_while_the_store_fails_reports_what_is_lost() -> None:
    worker, objects, _, reports = make_worker(top_k=3)
    objects.failing = True
    worker.sample(picture(100))
    worker.finish(StreamState.STOPPED)
    last = reports.last()
    assert last.state == StreamState.STOPPED
    assert (last.kept, last.unsaved, last.store_error) == (0, 1, "No space left on device")


def test_a_stop_after_the_store_is_back_flushes_everything() -> None:
    worker, objects, store, reports = make_worker(top_k=3)
    objects.failing = True
    worker.sample(picture(100))
    worker.sample(picture(200))
    objects.failing = False
    worker.finish(StreamState.STOPPED)
    assert stored_seqs(store) == {0, 1}
    manifest = store.get_manifest("s")
    assert manifest is not None and manifest.final and len(manifest.kept) == 2
    assert (reports.last().kept, reports.last().unsaved) == (2, 0)


def test_store_error_text_is_one_short_line() -> None:
    assert store_error_text(OSError(errno.ENOSPC, "No space left on device", "/d/x")) == (
        "No space left on device"
    )
    text = store_error_text(EndpointConnectionError(endpoint_url="http://127.0.0.1:9/b"))
    assert text.startswith("Could not connect to the endpoint URL")
    assert "\n" not in store_error_text(RuntimeError("two\nlines"))
