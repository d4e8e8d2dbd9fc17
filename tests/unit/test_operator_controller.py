"""The operator's engine without an API server: the cache's ordering, the work
queue's promises, the fleet's pace, and what a reconcile costs in API calls."""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

from streamgrid.core.crd import COMPONENT_LABEL, FINALIZER, STREAM_LABEL
from streamgrid.core.watch_cache import ObjectCache
from streamgrid.operator.controller import Controller, FleetPacer
from streamgrid.operator.kubeapi import KubernetesStreamApi
from streamgrid.operator.podspec import capture_pod
from streamgrid.operator.projections import slim_pod, slim_stream
from streamgrid.operator.settings import OperatorSettings
from streamgrid.operator.workqueue import WorkQueue
from testbed.processes import wait_until

SETTINGS = OperatorSettings(store_url="s3://bucket/frames", s3_secret_name="s3")


def stream(name: str, version: int, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "streamgrid.io/v1alpha1",
        "kind": "VideoStream",
        "metadata": {
            "name": name,
            "namespace": "cams",
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": str(version),
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"source": {"url": "rtsp://cam/x"}, "state": "Running"},
        "status": status,
    }


class FakeApi:
    """KubernetesStreamApi's calls, counted; the API server's versions."""

    def __init__(self, create_delay: float = 0.0) -> None:
        self.calls: Counter[str] = Counter()
        self.version = 1000
        self.create_delay = create_delay
        self.provisioner = None
        self.lock = threading.Lock()
        self.streams: dict[str, dict[str, Any]] = {}  # what the API server holds
        self.pods: dict[str, dict[str, Any]] = {}
        self.delete_answer: dict[str, Any] | None = None

    def add_stream(self, engine: Controller, body: dict[str, Any]) -> None:
        self.streams[body["metadata"]["name"]] = copy.deepcopy(body)
        engine.streams.put(body)

    def _next(self) -> str:
        with self.lock:
            self.version += 1
            return str(self.version)

    def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        time.sleep(self.create_delay)
        self.calls["create_pod"] += 1
        created = copy.deepcopy(body)
        created["metadata"].update(namespace=namespace, resourceVersion=self._next())
        created["status"] = {"phase": "Pending"}
        self.pods[created["metadata"]["name"]] = copy.deepcopy(created)
        return created

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls["get_pod"] += 1
        return None

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> dict[str, Any] | None:
        self.calls["delete_pod"] += 1
        self.pods.pop(name, None)
        return self.delete_answer

    def patch_stream_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        self.calls["patch_status"] += 1
        held = self.streams.get(name)
        if held is None:
            return None
        merged = {**(held.get("status") or {}), **status}
        held["status"] = {k: v for k, v in merged.items() if v is not None}
        held["metadata"]["resourceVersion"] = self._next()
        return copy.deepcopy(held)

    def add_finalizer(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self.calls["add_finalizer"] += 1
        held = self.streams.get(body["metadata"]["name"])
        if held is None:
            return None
        held["metadata"]["finalizers"] = [*held["metadata"].get("finalizers", []), FINALIZER]
        held["metadata"]["resourceVersion"] = self._next()
        return copy.deepcopy(held)

    def event(self, *_: Any) -> None:
        self.calls["event"] += 1

    def secret_version(self, namespace: str, name: str) -> str | None:
        self.calls["get_secret"] += 1
        return "7"

    def prepare_namespace(self, namespace: str) -> None:
        pass

    def delete_stream(self, namespace: str, name: str) -> None:
        self.calls["delete_stream"] += 1

    def list_all_streams(self, namespace: str | None) -> Iterator[tuple[list[Any], int]]:
        self.calls["list"] += 1
        return iter([([copy.deepcopy(s) for s in self.streams.values()], self.version)])

    def list_capture_pods(self, namespace: str | None) -> Iterator[tuple[list[Any], int]]:
        self.calls["list"] += 1
        return iter([([copy.deepcopy(p) for p in self.pods.values()], self.version)])


def controller(api: FakeApi, **settings: Any) -> Controller:
    return Controller(
        cast("KubernetesStreamApi", api), SETTINGS.model_copy(update=settings), workers=4
    )


# -- the cache -------------------------------------------------------------------
def test_the_cache_keeps_the_newest_version_and_drops_managed_fields() -> None:
    cache = ObjectCache(slim_stream)
    assert cache.put(stream("a", 5, state="Active"))
    assert not cache.put(stream("a", 4, state="Pending"))  # an older answer, late
    kept = cache.get(("cams", "a"))
    assert kept is not None and kept["status"]["state"] == "Active"
    assert "managedFields" not in kept["metadata"]
    kept["status"]["state"] = "changed by a reader"  # each reader gets its own copy
    assert cache.get(("cams", "a"))["status"]["state"] == "Active"  # type: ignore[index]


def test_a_deleted_object_is_not_brought_back_by_an_answer_that_raced_the_watch() -> None:
    cache = ObjectCache(slim_pod)
    pod = capture_pod(stream("a", 1), SETTINGS)
    pod["metadata"].update(namespace="cams", resourceVersion="10")
    cache.put(pod)
    cache.delete({**pod, "metadata": {**pod["metadata"], "resourceVersion": "12"}})
    assert not cache.put(pod)  # our create's answer (version 10), after the DELETED event
    assert cache.get(("cams", pod["metadata"]["name"])) is None
    again = copy.deepcopy(pod)
    again["metadata"]["resourceVersion"] = "13"  # made again since: kept
    assert cache.put(again)


def test_a_fresh_list_forgets_what_it_does_not_hold() -> None:
    seen: list[tuple[tuple[str, str], bool]] = []
    cache = ObjectCache(slim_stream, on_change=lambda key, obj: seen.append((key, obj is None)))
    cache.put(stream("a", 1))
    cache.put(stream("b", 1))
    cache.replace_all([stream("b", 2), stream("c", 1)])
    assert sorted(cache.keys()) == [("cams", "b"), ("cams", "c")]
    assert (("cams", "a"), True) in seen


# -- the work queue ----------------------------------------------------------------
def test_a_key_waits_once_and_is_handed_to_one_worker_at_a_time() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert queue.get() == "a"
    queue.add("a")  # while a worker has it: handed out again after done()
    assert queue.get() == "b"
    assert len(queue) == 0
    queue.done("a")
    assert queue.get() == "a"


def test_only_the_earliest_due_time_of_a_key_counts() -> None:
    now = [100.0]
    queue: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
    queue.add_after("a", 30)
    queue.add_after("a", 5)
    queue.add_after("a", 60)
    now[0] = 106.0
    assert queue.get() == "a"
    queue.done("a")
    now[0] = 200.0  # the 30 s and 60 s entries were superseded: nothing more
    queue.close()
    assert queue.get() is None


def test_a_failing_key_backs_off_and_forget_resets_it() -> None:
    queue: WorkQueue[str] = WorkQueue(clock=lambda: 0.0)
    assert [queue.retry("a") for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    queue.forget("a")
    assert queue.retry("a") == 1


# -- the fleet's pace ----------------------------------------------------------------
def test_the_report_period_keeps_the_fleet_within_its_write_budget() -> None:
    pacer = FleetPacer(floor=5.0, writes_per_second=40.0)
    for streams, period in ((1, 5), (100, 5), (1_000, 30), (3_000, 90), (10_000, 300)):
        assert pacer.period_for(streams) == period
        assert streams / period <= 40
    assert pacer.update(10_000) and pacer.current == 300
    assert not pacer.update(9_500)  # a little smaller: no flapping at the boundary
    assert pacer.update(4_000) and pacer.current == 120
    tests_floor = FleetPacer(floor=0.5, writes_per_second=40.0)
    assert tests_floor.period_for(1) == 0.5


# -- reconciles: API calls -------------------------------------------------------------
def test_many_events_at_once_make_one_pod() -> None:
    """At 3,000 streams the 30-s check raced the create handler: 500 duplicate
    creates. Here 50 events for one stream arrive while the create is slow."""
    api = FakeApi(create_delay=0.05)
    engine = controller(api)
    api.streams["a"] = stream("a", 1)
    engine.synced.set()
    engine.start()
    try:
        for version in range(1, 51):  # each a new version (finalizer, status, ...)
            engine.stream_event("MODIFIED", stream("a", version))
            time.sleep(0.002)
        wait_until(lambda: api.calls["create_pod"] >= 1, 5, "the pod created")
        time.sleep(0.3)
        assert api.calls["create_pod"] == 1
    finally:
        engine.stop()


def test_a_running_fleet_costs_no_api_calls_at_a_resync() -> None:
    api = FakeApi()
    engine = controller(api)
    for index in range(200):
        name = f"cam{index}"
        api.add_stream(engine, stream(name, 1))
        engine.reconcile_now(("cams", name))  # creates the pod, writes the status
    assert api.calls["create_pod"] == 200
    settled: dict[str, Any] = {}
    for index in range(200):  # as the watch shows them now: pods running, status written
        name = f"cam{index}"
        pod = engine.pods.get(("cams", f"{name}-capture"))
        assert pod is not None and pod["metadata"]["labels"][STREAM_LABEL] == name
        assert pod["metadata"]["labels"][COMPONENT_LABEL] == "capture"
        pod["status"] = {"phase": "Running"}
        pod["metadata"]["resourceVersion"] = "5000"
        engine.pod_event("MODIFIED", pod)
        settled[name] = engine.reconcile_now(("cams", name))
    before = Counter(api.calls)
    for index in range(200):  # the resync: from the cache, nothing changed
        result = engine.reconcile_now(("cams", f"cam{index}"))
        assert result is not None and not result.status and not result.create_pod
    assert api.calls == before  # no reads, no writes
    engine.queue.close()


def test_a_stream_with_a_credentials_secret_reads_it_only_to_make_a_pod() -> None:
    api = FakeApi()
    engine = controller(api)
    body = stream("a", 1)
    body["spec"]["source"]["credentialsSecretRef"] = {"name": "a-credentials"}
    api.add_stream(engine, body)
    engine.reconcile_now(("cams", "a"))
    assert api.calls["get_secret"] == 1 and api.calls["create_pod"] == 1
    pod = engine.pods.get(("cams", "a-capture"))
    assert pod is not None
    pod["status"] = {"phase": "Running"}
    pod["metadata"]["resourceVersion"] = "5000"
    engine.pod_event("MODIFIED", pod)
    for _ in range(5):
        engine.reconcile_now(("cams", "a"))
    assert api.calls["get_secret"] == 1


def running_pod(engine: Controller, name: str, phase: str = "Running", **state: Any) -> None:
    """The watch shows the stream's pod in ``phase``."""
    pod = engine.pods.get(("cams", f"{name}-capture"))
    assert pod is not None
    pod["status"] = {
        "phase": phase,
        "containerStatuses": [{"name": "capture", "state": state}] if state else [],
    }
    pod["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1)
    engine.pod_event("MODIFIED", pod)


def test_a_pod_gone_while_the_watch_was_down_is_noticed_by_the_relist() -> None:
    """Kopf re-lists after a 410 without DELETED events for what went
    meanwhile: the cache must not keep a pod that is gone for good."""
    api = FakeApi()
    engine = controller(api)
    api.add_stream(engine, stream("a", 1))
    engine.reconcile_now(("cams", "a"))
    running_pod(engine, "a")
    api.pods.clear()  # deleted (a node drain) while no event reached us
    api.version += 10
    assert engine.relist() == [("cams", "a")]
    assert engine.pods.get(("cams", "a-capture")) is None
    engine.reconcile_now(("cams", "a"))
    assert api.calls["create_pod"] == 2  # recreated


def test_a_pod_whose_delete_answers_404_is_not_counted_twice() -> None:
    api = FakeApi()
    engine = controller(api)
    api.add_stream(engine, stream("a", 1))
    engine.reconcile_now(("cams", "a"))
    running_pod(engine, "a", "Failed", terminated={"exitCode": 1})
    first = engine.reconcile_now(("cams", "a"))  # the exit: delete it, count it
    assert first is not None and first.delete_pod and first.status["restarts"] == 1
    assert engine.pods.get(("cams", "a-capture")) is None  # 404: gone, not kept
    again = engine.reconcile_now(("cams", "a"))  # our status patch's event, before DELETED's
    assert again is not None and again.status.get("restarts") is None


def test_a_due_time_left_in_the_past_is_not_retried_at_once() -> None:
    from datetime import UTC, datetime, timedelta

    from streamgrid.operator.controller import wake_in

    now = datetime(2026, 11, 29, tzinfo=UTC)
    past = (now - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = stream("a", 1, state="Pending", nextAttemptAt=past)
    wait = wake_in(body, SETTINGS, now)
    assert wait is not None and wait >= 1.0


def test_a_provisioning_refusal_is_tried_again_after_a_backoff() -> None:
    from streamgrid.operator.provision import ProvisionError

    api = FakeApi()
    refusals = [ProvisionError("namespace cams is not enabled for capture pods")]

    def prepare(namespace: str) -> None:
        if refusals:
            raise refusals.pop()

    api.prepare_namespace = prepare  # type: ignore[method-assign]
    engine = controller(api)
    engine.queue = WorkQueue(retry_initial=0.05)
    api.add_stream(engine, stream("a", 1))
    engine.start()
    try:
        engine.queue.add(("cams", "a"))
        wait_until(lambda: api.calls["create_pod"] == 1, 5, "the pod once the namespace is ready")
    finally:
        engine.stop()


def test_the_same_version_again_is_no_change() -> None:
    cache = ObjectCache(slim_stream)
    assert cache.put(stream("a", 5))
    assert not cache.put(stream("a", 5))  # a re-list: nothing to reconcile


# -- rolling out a new pod template, and leading (issue 23) ------------------------
def pod_running_on(of: dict[str, Any], settings: OperatorSettings, version: int) -> dict[str, Any]:
    pod = capture_pod(of, settings)
    pod["metadata"].update(
        namespace="cams",
        resourceVersion=str(version),
        uid=f"pod-{of['metadata']['name']}-{version}",
    )
    pod["status"] = {"phase": "Running"}
    return pod


def test_a_new_template_is_rolled_out_a_batch_at_a_time() -> None:
    """Six Active streams on the old image, max_unavailable 2: two pods go,
    the others wait until those two run and are Active again."""
    api = FakeApi()
    old = SETTINGS
    engine = controller(api, capture_image="localhost/streamgrid-capture:v2", max_unavailable="2")
    names = [f"cam{i}" for i in range(6)]
    for i, name in enumerate(names):
        body = stream(name, 10 + i, state="Active", captureState="Active", observedGeneration=1)
        body["metadata"]["finalizers"] = [FINALIZER]
        api.add_stream(engine, body)
        pod = pod_running_on(body, old, 100 + i)
        api.pods[pod["metadata"]["name"]] = pod
        engine.pods.put(pod)
    for name in names:
        engine.reconcile_now(("cams", name))
    assert api.calls["delete_pod"] == 2
    rolled = sorted(n for n in names if f"{n}-capture" not in api.pods)
    assert len(rolled) == 2
    for name in names:  # looked at again: the rolled ones get new pods, no more go
        engine.reconcile_now(("cams", name))
    assert api.calls["delete_pod"] == 2 and api.calls["create_pod"] == 2
    engine._roll_on()
    assert len(engine.queue) == 0  # nothing more may go yet
    # They run and report Active: two more go.
    for i, name in enumerate(rolled):
        fresh = pod_running_on(api.streams[name], engine.settings, 5000 + i)
        engine.pods.put(fresh)
        held = api.streams[name]
        held["status"]["state"] = "Active"
        held["metadata"]["resourceVersion"] = str(5100 + i)
        engine.streams.put(copy.deepcopy(held))
    engine._roll_on()
    assert len(engine.queue) == 2
    while len(engine.queue):
        key = engine.queue.get()
        assert key is not None
        engine.reconcile_now(key)
        engine.queue.done(key)
    assert api.calls["delete_pod"] == 4


def test_a_standby_writes_nothing_and_a_new_leader_looks_at_everything() -> None:
    api = FakeApi()
    leading = [False]
    engine = Controller(
        cast("KubernetesStreamApi", api), SETTINGS, workers=2, is_leader=lambda: leading[0]
    )
    api.add_stream(engine, stream("a", 1))
    engine.sync()
    engine.start()
    try:
        time.sleep(0.3)
        assert sum(api.calls.values()) == 2  # the start-up LISTs, nothing else
        leading[0] = True
        engine.lead(True)
        wait_until(lambda: api.calls["create_pod"] == 1, 5, "the pod created")
    finally:
        engine.stop()


def test_a_failed_stream_looks_at_its_secret_again_within_10_s() -> None:
    """Issue 23 item 4: a fixed credentials Secret retried a Failed stream only
    at the next resync (300 s). Now the Failed stream is looked at again every
    few seconds, each time one GET of that Secret alone."""
    from datetime import UTC, datetime

    from streamgrid.operator.controller import wake_in

    failed = stream("a", 1, state="Failed", failedInputs="generation=1 secret=7 retry=-")
    failed["spec"]["source"]["credentialsSecretRef"] = {"name": "a-creds"}
    wait = wake_in(failed, SETTINGS, datetime.now(UTC))
    assert wait is not None and wait <= 10
    without = stream("b", 1, state="Failed")
    assert wake_in(without, SETTINGS, datetime.now(UTC)) is None  # no Secret: nothing to watch
    api = FakeApi()
    engine = controller(api)
    failed["metadata"]["finalizers"] = [FINALIZER]
    api.add_stream(engine, failed)
    engine.reconcile_now(("cams", "a"))
    assert api.calls["get_secret"] == 1  # that Secret, by name; no list of Secrets
