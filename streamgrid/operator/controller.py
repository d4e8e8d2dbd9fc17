"""The operator's engine: a cache fed by watches, a work queue, a few worker
threads, and a resync spread over time. Kopf (handlers.py) only delivers
the watch events and runs the deletion finalizer.

Cost at steady state, whatever the fleet's size: no reads (reconciles read
the cache; the credentials Secret only when a pod is to be made or a Failed
stream waits on it), no writes unless something changed. Each stream is
reconciled on every event of its own or its pod's, when a backoff or TTL it
set ends, and once every ``reconcile_interval_seconds`` (its slot in the
interval fixed by a hash of its name, so the resync is spread evenly).

Capture pods report counts at the fleet's pace (FleetPacer): the period grows
with the number of running streams so that, in all, they send at most
``status_writes_per_second`` count reports a second. The operator writes the
period into each stream's ``status.progressIntervalSeconds``; the pod reads it
in the answer to its next PATCH (no extra request).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..core.crd import STREAM_LABEL
from ..core.logs import log_event
from ..core.timestamps import parse_utc
from ..core.watch_cache import Key, Obj, ObjectCache, key_of
from .kubeapi import KubernetesStreamApi
from .metrics import Outcome
from .podspec import pod_name
from .projections import slim_pod, slim_stream
from .provision import ProvisionError, report_reconcile_failure
from .reconcile import Plan, reconcile
from .settings import OperatorSettings
from .workqueue import WorkQueue

log = logging.getLogger("streamgrid.operator")

# Steps of the count-report period, in seconds: "nice" values, so that the
# period changes (and each stream's status is written) only a few times as a
# fleet grows from one camera to tens of thousands.
PACE_STEPS: tuple[float, ...] = (
    *(5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0),
    *(450.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0),
)
# A stream Pending for want of its credentials Secret looks for it this often
# (one GET each time); a created Secret starts it within this.
SECRET_RECHECK_SECONDS = 10.0


class FleetPacer:
    """The count-report period for a fleet: the smallest step at or above
    ``floor`` that keeps ``streams / period`` within ``writes_per_second``.
    Grows at once; shrinks only when the fleet has a quarter to spare below
    the smaller step, so a fleet near a boundary does not flap."""

    def __init__(self, floor: float, writes_per_second: float) -> None:
        self.floor, self.budget = floor, writes_per_second
        self.steps = [floor, *(step for step in PACE_STEPS if step > floor)]
        self.current = self.period_for(0)

    def period_for(self, streams: int) -> float:
        need = streams / self.budget
        return next((step for step in self.steps if step >= need), self.steps[-1])

    def update(self, streams: int) -> bool:
        """True when the period changed."""
        target = self.period_for(streams)
        if target > self.current or self.period_for(int(streams * 1.25)) < self.current:
            changed = target != self.current
            self.current = target
            return changed
        return False


def runs_a_pod(stream: Obj | None) -> bool:
    """Whether a stream counts toward the fleet's report load."""
    if stream is None:
        return False
    desired = (stream.get("spec") or {}).get("state", "Running")
    return desired == "Running" and (stream.get("status") or {}).get("state") != "Failed"


def wake_in(stream: Obj, settings: OperatorSettings, now: datetime) -> float | None:
    """Seconds until the stream needs a look though nothing changes: a
    crashed pod's backoff ends (nextAttemptAt), a stopped stream's TTL ends,
    a missing credentials Secret is looked for again. None: not before the
    resync."""
    status, spec = stream.get("status") or {}, stream.get("spec") or {}
    due: list[float] = []
    retry_at = parse_utc(status.get("nextAttemptAt"))
    if retry_at is not None:
        due.append((retry_at - now).total_seconds())
    stopped_at = parse_utc(status.get("stoppedAt"))
    if status.get("state") == "Stopped" and stopped_at is not None:
        ttl = float(spec.get("ttlSecondsAfterStopped", settings.default_ttl_seconds))
        due.append((stopped_at - now).total_seconds() + ttl)
    if status.get("state") == "Pending" and "credentials Secret" in str(status.get("reason")):
        due.append(SECRET_RECHECK_SECONDS)
    if not due:
        return None
    # A time already past that the plan did not clear (a backoff over but the
    # Secret still missing, a TTL whose deletion waits on the finalizer): look
    # again in a while, not at once and again and again.
    return max(1.0, min(due)) if min(due) <= 0 else min(due)


# One reconcile (or the delete handler) at a time per stream: the work queue
# hands a key to one worker, but the delete handler runs in Kopf's threads, and
# a reconcile that read the stream before its deletion could make a pod after
# its data was deleted. Each lock with how many hold or wait on it: dropped
# only when none do (a lock dropped while waited on would let two in).
_stream_locks: dict[Key, tuple[threading.Lock, list[int]]] = {}
_stream_locks_guard = threading.Lock()


@contextlib.contextmanager
def stream_lock(namespace: str, name: str) -> Iterator[None]:
    key = (namespace, name)
    with _stream_locks_guard:
        lock, users = _stream_locks.setdefault(key, (threading.Lock(), [0]))
        users[0] += 1
    try:
        with lock:
            yield
    finally:
        with _stream_locks_guard:
            users[0] -= 1
            if users[0] == 0:
                del _stream_locks[key]


class CachedStreamApi:
    """reconcile's StreamApi: reads from the cache, writes through the API
    server, and keeps each write's answer so the next plan sees it."""

    def __init__(self, api: KubernetesStreamApi, streams: ObjectCache, pods: ObjectCache) -> None:
        self.api, self.streams, self.pods = api, streams, pods

    def get_stream(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.streams.get((namespace, name))

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pods.get((namespace, name))

    def create_pod(self, namespace: str, body: dict[str, Any]) -> None:
        created = self.api.create_pod(namespace, body)
        if created is None:  # 409: it exists though the cache had none; see it
            created = self.api.get_pod(namespace, body["metadata"]["name"])
        if created is not None:
            self.pods.put(created)

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None:
        answer = self.api.delete_pod(namespace, name, grace_seconds)
        if answer is not None and answer.get("kind") == "Pod":
            if answer["metadata"].get("deletionTimestamp"):
                self.pods.put(answer)  # terminating: gone once the watch says so
                return
            self.pods.delete(answer)  # deleted at once (never ran)
            return
        # 404 (already gone) or a Status: gone, whatever the cache says; else
        # the next plan would count this terminal pod's exit again.
        cached = self.pods.get((namespace, name))
        if cached is not None:
            self.pods.delete(cached)

    def delete_stream(self, namespace: str, name: str) -> None:
        self.api.delete_stream(namespace, name)

    def patch_stream_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        answer = self.api.patch_stream_status(namespace, name, status)
        if answer is not None:
            self.streams.put(answer)

    def event(self, stream: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.api.event(stream, type_, reason, message)

    def secret_version(self, namespace: str, name: str) -> str | None:
        return self.api.secret_version(namespace, name)

    def prepare_namespace(self, namespace: str) -> None:
        self.api.prepare_namespace(namespace)


class Controller:
    def __init__(
        self,
        api: KubernetesStreamApi,
        settings: OperatorSettings,
        workers: int = 8,
        on_reconcile: Callable[[Outcome, float], None] | None = None,
    ) -> None:
        self.api, self.settings = api, settings
        self.streams = ObjectCache(slim_stream, on_change=self._stream_changed)
        self.pods = ObjectCache(slim_pod)
        self.reads = CachedStreamApi(api, self.streams, self.pods)
        self.queue: WorkQueue[Key] = WorkQueue()
        self.pacer = FleetPacer(
            settings.progress_interval_seconds, settings.status_writes_per_second
        )
        self.resync_slots = max(1, round(settings.reconcile_interval_seconds))
        self._slots: dict[int, set[Key]] = {}
        self._running: set[Key] = set()
        self._index_lock = threading.Lock()
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._on_reconcile = on_reconcile  # (outcome, seconds): metrics
        self.synced = threading.Event()
        self._synced_at: float | None = None  # until the first full pass is done

    # -- watch events (called from Kopf's event loop: quick, no I/O) -----------
    def stream_event(self, kind: str | None, obj: Obj) -> None:
        if kind == "DELETED":
            self.streams.delete(obj)
            return
        if self.streams.put(obj) and not obj["metadata"].get("deletionTimestamp"):
            self.queue.add(key_of(obj))

    def pod_event(self, kind: str | None, obj: Obj) -> None:
        stream = (obj["metadata"].get("labels") or {}).get(STREAM_LABEL)
        if kind == "DELETED":
            self.pods.delete(obj)
        elif not self.pods.put(obj):
            return
        if stream:
            self.queue.add((str(obj["metadata"].get("namespace") or ""), stream))

    # -- start and stop ----------------------------------------------------------
    def sync(self) -> None:
        """The first LIST of streams and capture pods, before any reconcile:
        a stream seen before its pod would look like one whose pod was lost."""
        self.relist()
        self.synced.set()
        self._synced_at = time.monotonic()
        self.pacer.update(len(self._running))
        self.queue.add_many(self.streams.keys())
        log_event(
            log,
            "operator.synced",
            streams=len(self.streams),
            pods=len(self.pods),
            progress_interval=self.pacer.current,
        )

    def relist(self) -> list[Key]:
        """LIST streams and capture pods and make the cache agree: a watch
        that broke (410 Gone) re-lists without DELETED events for what went
        meanwhile. Returns the streams to look at again (theirs or their
        pod's entry dropped). Once at start, then every resync interval:
        2 x N/500 requests per interval."""
        namespace = self.settings.namespace
        streams, streams_version = self.api.list_all_streams(namespace)
        stale = self.streams.replace_all(streams, streams_version)
        pods, pods_version = self.api.list_capture_pods(namespace)
        for namespace_, pod in self.pods.replace_all(pods, pods_version):
            stream = pod[: -len("-capture")] if pod.endswith("-capture") else pod
            stale.append((namespace_, stream))
        return stale

    def _relist_loop(self) -> None:
        while not self._stop.wait(self.settings.reconcile_interval_seconds):
            try:
                stale = self.relist()
            except Exception as exc:  # noqa: BLE001 - the API server's trouble: next time
                log_event(log, "relist.failed", logging.WARNING, error=str(exc)[:300])
                continue
            if stale:
                log_event(log, "relist.dropped", count=len(stale))
                self.queue.add_many(stale)

    def start(self) -> None:
        for index in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"reconcile-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for target, name in ((self._tick, "resync"), (self._relist_loop, "relist")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.queue.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- the work ----------------------------------------------------------------
    def reconcile_now(self, key: Key) -> Plan | None:
        namespace, name = key
        with stream_lock(namespace, name):
            result = reconcile(
                self.reads, self.settings, namespace, name, progress_interval=self.pacer.current
            )
        stream = self.streams.get(key)
        deleting = stream is None or bool(stream["metadata"].get("deletionTimestamp"))
        if not deleting and stream is not None and not (result and result.delete_stream):
            wait = wake_in(stream, self.settings, datetime.now(UTC))
            if wait is not None:
                self.queue.add_after(key, wait + 0.05)
        return result

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            started = time.monotonic()
            outcome: Outcome = "ok"
            try:
                self.reconcile_now(key)
                self.queue.forget(key)
            except ProvisionError as exc:
                # Said on the stream (apply: report_problem); try again soon.
                outcome = "retry"
                delay = self.queue.retry(key)
                log_event(
                    log,
                    "reconcile.provision_failed",
                    logging.WARNING,
                    stream=key[1],
                    namespace=key[0],
                    why=str(exc)[:300],
                    retry_in=delay,
                )
            except ApiException as exc:
                outcome = "retry"
                delay = self.queue.retry(key)
                log_event(
                    log,
                    "reconcile.failed",
                    logging.WARNING,
                    stream=key[1],
                    namespace=key[0],
                    status=exc.status,
                    retry_in=delay,
                )
                # The API refused something (say, a pod): the user sees why, and
                # the namespace's ServiceAccount, Role and Secret are checked again.
                if self.api.provisioner is not None:
                    self.api.provisioner.forget(key[0])
                with contextlib.suppress(Exception):
                    report_reconcile_failure(self.reads, key[0], key[1], exc)
            except Exception:  # a bug must not stop the worker (logged with its traceback)
                outcome = "error"
                delay = self.queue.retry(key)
                log.exception("reconcile of %s/%s failed; again in %g s", *key, delay)
            finally:
                self.queue.done(key)
                if self._on_reconcile is not None:
                    self._on_reconcile(outcome, time.monotonic() - started)
                self._note_resumed()

    def _note_resumed(self) -> None:
        """Logs once when every stream listed at start-up has been reconciled
        (how long a restart takes to catch up)."""
        synced_at = self._synced_at
        if synced_at is not None and self.queue.idle():
            self._synced_at = None
            log_event(
                log,
                "operator.resumed",
                streams=len(self.streams),
                seconds=round(time.monotonic() - synced_at, 2),
            )

    def _tick(self) -> None:
        """Each second: this second's resync slot, and the fleet's pace."""
        last = int(time.time())
        while not self._stop.wait(1.0):
            now = int(time.time())
            for second in range(last + 1, min(now, last + self.resync_slots) + 1):
                with self._index_lock:
                    due = list(self._slots.get(second % self.resync_slots, ()))
                self.queue.add_many(due)
            last = now
            with self._index_lock:
                running = len(self._running)
            if self.pacer.update(running):
                # Each stream's status gets the new period at its resync.
                log_event(log, "fleet.pace", streams=running, progress_interval=self.pacer.current)

    def _stream_changed(self, key: Key, obj: Obj | None) -> None:
        slot = zlib.crc32(f"{key[0]}/{key[1]}".encode()) % self.resync_slots
        with self._index_lock:
            if obj is None:
                self._slots.get(slot, set()).discard(key)
                self._running.discard(key)
                return
            self._slots.setdefault(slot, set()).add(key)
            if runs_a_pod(obj):
                self._running.add(key)
            else:
                self._running.discard(key)


__all__ = ["Controller", "FleetPacer", "pod_name", "stream_lock"]
