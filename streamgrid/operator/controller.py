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
import ctypes
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from ..core.crd import FINALIZER, STREAM_LABEL, TEMPLATE_HASH_ANNOTATION
from ..core.kuberest import ApiError
from ..core.logs import log_event
from ..core.stores.base import StoreError, store_error_text
from ..core.timestamps import parse_utc
from ..core.watch_cache import Key, Obj, ObjectCache, key_of
from .kubeapi import KubernetesStreamApi
from .metrics import OperatorMetrics, Outcome
from .podspec import pod_name, template_hash
from .projections import slim_pod, slim_stream
from .provision import ProvisionError, report_reconcile_failure
from .reconcile import Plan, reconcile
from .retention import StillRunning, finish_deleted_stream
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
# A Failed stream with a credentials Secret looks at it this often (one GET
# of that Secret by name): a fixed Secret retries it within this. A watch
# would need the verbs list and watch on every Secret of the cluster.
FAILED_SECRET_RECHECK_SECONDS = 5.0
# A stream being deleted looks again this often while its pod stops.
DELETION_RECHECK_SECONDS = 2.0
# A rolled stream holds its slot at most this long (a camera that stays away).
ROLLOUT_DEADLINE_SECONDS = 300.0


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


def return_freed_memory() -> None:
    """Gives back to the system what a relist's pages left free in the heap
    (glibc keeps it otherwise: the operator's RSS stayed at its peak)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


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
    if status.get("state") == "Failed" and (spec.get("source") or {}).get("credentialsSecretRef"):
        due.append(FAILED_SECRET_RECHECK_SECONDS)
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


class NotLeader(RuntimeError):
    """This replica does not hold the Lease (any more): it writes nothing."""


class CachedStreamApi:
    """reconcile's StreamApi: reads from the cache, writes through the API
    server, and keeps each write's answer so the next plan sees it. Every
    write first asks whether this replica leads (leader.py): a replica that
    lost the Lease stops writing at once, mid-plan included."""

    def __init__(
        self,
        api: KubernetesStreamApi,
        streams: ObjectCache,
        pods: ObjectCache,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.api, self.streams, self.pods = api, streams, pods
        self.is_leader = is_leader

    def _writing(self) -> None:
        if not self.is_leader():
            raise NotLeader("not the leader: no writes")

    def get_stream(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.streams.get((namespace, name))

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pods.get((namespace, name))

    def create_pod(self, namespace: str, body: dict[str, Any]) -> None:
        self._writing()
        created = self.api.create_pod(namespace, body)
        if created is None:  # 409: it exists though the cache had none; see it
            created = self.api.get_pod(namespace, body["metadata"]["name"])
        if created is not None:
            self.pods.put(created)

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None:
        self._writing()
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
        self._writing()
        self.api.delete_stream(namespace, name)

    def patch_stream_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._writing()
        answer = self.api.patch_stream_status(namespace, name, status)
        if answer is not None:
            self.streams.put(answer)

    def event(self, stream: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self._writing()
        self.api.event(stream, type_, reason, message)

    def add_finalizer(self, stream: dict[str, Any]) -> None:
        self._writing()
        answer = self.api.add_finalizer(stream)
        if answer is not None:
            self.streams.put(answer)

    def remove_finalizer(self, stream: dict[str, Any]) -> None:
        self._writing()
        answer = self.api.remove_finalizer(stream)
        if answer is not None:
            self.streams.put(answer)

    def secret_version(self, namespace: str, name: str) -> str | None:
        return self.api.secret_version(namespace, name)

    def prepare_namespace(self, namespace: str) -> None:
        self._writing()
        self.api.prepare_namespace(namespace)


class Controller:
    def __init__(
        self,
        api: KubernetesStreamApi,
        settings: OperatorSettings,
        workers: int = 8,
        on_reconcile: Callable[[Outcome, float], None] | None = None,
        is_leader: Callable[[], bool] | None = None,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        """``is_leader``: whether this replica holds the Lease now (leader.py);
        None: it always does (one replica, no election)."""
        self.api, self.settings = api, settings
        self.is_leader = is_leader or (lambda: True)
        self.metrics = metrics
        self.streams = ObjectCache(slim_stream, on_change=self._stream_changed)
        self.pods = ObjectCache(slim_pod, on_change=self._pod_changed)
        self.reads = CachedStreamApi(api, self.streams, self.pods, self.is_leader)
        self.leading = threading.Event()
        if is_leader is None:
            self.leading.set()
        # Indexes the change hooks keep: streams whose pod runs; pods on an
        # older template; streams a rollout took the pod of, until they run
        # again (and whether they were Active before, and since when); each
        # stream's (state, desired running, store error) for the metrics.
        self.template = template_hash(settings)
        self._pod_up: dict[Key, str] = {}  # stream -> the uid of its running pod
        self._outdated: set[Key] = set()
        # stream -> (Active before?, since when, the uid of the pod that went)
        self._rolling: dict[Key, tuple[bool, float, str]] = {}
        self._states: dict[Key, tuple[str, bool, bool]] = {}
        self._recreated: dict[Key, int] = {}  # pods this replica recreated, by stream
        self._roll_lock = threading.Lock()
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
        if self.streams.put(obj):
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
        stale = self.streams.replace_pages(self.api.list_all_streams(namespace))
        for namespace_, pod in self.pods.replace_pages(self.api.list_capture_pods(namespace)):
            stream = pod[: -len("-capture")] if pod.endswith("-capture") else pod
            stale.append((namespace_, stream))
        return_freed_memory()
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

    def lead(self, leading: bool) -> None:
        """This replica got the Lease (or lost it: its writes stop on their
        own, leader.py). A new leader looks again at everything: its cache is
        the watches', warm, but it did nothing while it waited."""
        if not leading:
            self.leading.clear()
            return
        try:
            stale = self.relist()
        except Exception as exc:  # noqa: BLE001 - the watches' cache will do meanwhile
            log_event(log, "relist.failed", logging.WARNING, error=str(exc)[:300])
            stale = []
        self.leading.set()
        self.queue.add_many([*self.streams.keys(), *stale])
        log_event(log, "operator.leading", streams=len(self.streams))

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
        stream = self.streams.get(key)
        if stream is not None and stream["metadata"].get("deletionTimestamp"):
            self._finish_deletion(key, stream)
            return None
        if stream is not None and FINALIZER not in (stream["metadata"].get("finalizers") or []):
            self.reads.add_finalizer(stream)  # first: a deletion then waits for the data
        reserved: list[bool] = []

        def may_roll() -> bool:
            reserved.append(self._reserve_roll(key))
            return reserved[-1]

        with stream_lock(namespace, name):
            result = reconcile(
                self.reads,
                self.settings,
                namespace,
                name,
                progress_interval=self.pacer.current,
                may_roll=may_roll,
            )
        if reserved and reserved[-1]:
            self._rolled(key, result, stream)
        if result is not None:
            recreated = sum(
                1 for _, why, text in result.events if why == "PodCreated" and "recreated" in text
            )
            if recreated:
                with self._index_lock:
                    self._recreated[key] = self._recreated.get(key, 0) + recreated
        stream = self.streams.get(key)
        deleting = stream is None or bool(stream["metadata"].get("deletionTimestamp"))
        if not deleting and stream is not None and not (result and result.delete_stream):
            wait = wake_in(stream, self.settings, datetime.now(UTC))
            if wait is not None:
                self.queue.add_after(key, wait + 0.05)
        return result

    # -- deletion: the finalizer ------------------------------------------------
    def _finish_deletion(self, key: Key, stream: Obj) -> None:
        """A deleted stream's pod stopped and its data deleted (retention.py),
        then our finalizer released. Waits are the queue's: the pod's events
        bring the key back, and a failing store is tried again after
        ``data_delete_retry_seconds`` (one aggregated Event, not one a try)."""
        if FINALIZER not in (stream["metadata"].get("finalizers") or []):
            return
        namespace, name = key
        deleted_at = parse_utc(stream["metadata"].get("deletionTimestamp"))
        now = datetime.now(UTC)
        elapsed = (now - deleted_at).total_seconds() if deleted_at is not None else 0.0
        try:
            with stream_lock(namespace, name):
                outcome = finish_deleted_stream(
                    self.reads, self.settings, namespace, name, elapsed=elapsed
                )
        except StillRunning:
            self.queue.add_after(key, DELETION_RECHECK_SECONDS)
            return
        except (StoreError, ApiError) as exc:
            log_event(
                log,
                "stream.data_delete_retry",
                logging.WARNING,
                stream=name,
                namespace=namespace,
                why=store_error_text(exc)[:300],
            )
            self.queue.add_after(key, self.settings.data_delete_retry_seconds)
            return
        if outcome == "abandoned" and self.metrics is not None:
            self.metrics.data_delete_abandoned()
        latest = self.streams.get(key) or stream
        self.reads.remove_finalizer(latest)

    # -- rolling out a new pod template --------------------------------------------
    def _unavailable(self) -> int:
        """Streams that should run but have no running pod, and those a
        rollout took the pod of and that do not run again yet."""
        with self._index_lock:
            down = self._running - self._pod_up.keys()
            return len(down | self._rolling.keys())

    def _reserve_roll(self, key: Key) -> bool:
        """Whether the stream's outdated pod may go now: within
        ``max_unavailable`` of the streams that should run."""
        with self._roll_lock:
            if key in self._rolling:
                return True
            with self._index_lock:
                running = len(self._running)
            if self._unavailable() >= self.settings.rollout_limit(running):
                return False
            with self._index_lock:
                self._rolling[key] = (False, time.monotonic(), self._pod_up.get(key, ""))
            return True

    def _rolled(self, key: Key, result: Plan | None, before: Obj | None) -> None:
        """After a plan that was allowed to roll: keep the slot while the new
        pod comes up, or give it back if the plan did not roll."""
        with self._roll_lock, self._index_lock:
            if result is None or not result.rolled:
                self._rolling.pop(key, None)
                return
            was_active = ((before or {}).get("status") or {}).get("state") == "Active"
            _, since, old_pod = self._rolling.get(key, (False, time.monotonic(), ""))
            self._rolling[key] = (was_active, since, old_pod)
        log_event(log, "rollout.pod", stream=key[1], namespace=key[0], was_active=was_active)

    def _roll_on(self) -> None:
        """Each second: slots of rollouts that ran past their deadline go, and
        outdated pods are looked at while the budget has room."""
        now = time.monotonic()
        with self._roll_lock, self._index_lock:
            for key, (_, since, _) in list(self._rolling.items()):
                if now - since > ROLLOUT_DEADLINE_SECONDS:
                    del self._rolling[key]  # a camera that stays away holds no slot for good
            waiting = [k for k in self._outdated if k not in self._rolling and k in self._running]
            running = len(self._running)
        room = self.settings.rollout_limit(running) - self._unavailable()
        if waiting and room > 0:
            self.queue.add_many(sorted(waiting)[:room])

    def _work(self) -> None:
        while True:
            while not self.leading.wait(1.0):  # a standby waits, its cache warm
                if self._stop.is_set():
                    return
            key = self.queue.get()
            if key is None:
                return
            started = time.monotonic()
            outcome: Outcome = "ok"
            try:
                if not self.leading.is_set():
                    self.queue.add_after(key, 1.0)  # lost the Lease: the next leader's
                    continue
                self.reconcile_now(key)
                self.queue.forget(key)
            except NotLeader:
                outcome = "retry"
                self.queue.add_after(key, 1.0)
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
            except ApiError as exc:
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
            if self.leading.is_set():
                self._roll_on()
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
                self._rolling.pop(key, None)
                self._states.pop(key, None)
                self._recreated.pop(key, None)
                return
            self._slots.setdefault(slot, set()).add(key)
            if runs_a_pod(obj):
                self._running.add(key)
            else:
                self._running.discard(key)
                self._rolling.pop(key, None)  # stopped or failed: nothing to wait for
            status = obj.get("status") or {}
            state = str(status.get("state") or "Pending")
            desired = (obj.get("spec") or {}).get("state", "Running") == "Running"
            self._states[key] = (state, desired, bool(status.get("storeError")))
            self._roll_done(key)

    def _roll_done(self, key: Key) -> None:
        """Under the index lock: a rolled stream whose new pod runs (and is
        Active again, if it was before) gives its slot back."""
        rolled = self._rolling.get(key)
        if rolled is None:
            return
        was_active, _, old_pod = rolled
        new_pod = self._pod_up.get(key)
        state = self._states.get(key, ("", False, False))[0]
        if new_pod and new_pod != old_pod and (state == "Active" or not was_active):
            del self._rolling[key]

    def _pod_changed(self, key: Key, pod: Obj | None) -> None:
        """A capture pod's stream: whether its pod runs, on which template."""
        stream = key
        if pod is not None:
            label = (pod["metadata"].get("labels") or {}).get(STREAM_LABEL)
            stream = (key[0], str(label)) if label else key
        elif key[1].endswith("-capture"):
            stream = (key[0], key[1][: -len("-capture")])
        with self._index_lock:
            meta = (pod or {}).get("metadata") or {}
            up = (
                pod is not None
                and (pod.get("status") or {}).get("phase") == "Running"
                and not meta.get("deletionTimestamp")
            )
            if up:
                self._pod_up[stream] = str(meta.get("uid") or "")
            else:
                self._pod_up.pop(stream, None)
            made_from = (meta.get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION)
            if pod is not None and made_from is not None and made_from != self.template:
                self._outdated.add(stream)
            else:
                self._outdated.discard(stream)
            self._roll_done(stream)

    def stream_states(self) -> dict[Key, tuple[str, bool, bool, int]]:
        """Each stream's (state, desired Running, store error, pods recreated),
        for the metrics."""
        with self._index_lock:
            return {k: (*v, self._recreated.get(k, 0)) for k, v in self._states.items()}


__all__ = ["Controller", "FleetPacer", "pod_name", "stream_lock"]
