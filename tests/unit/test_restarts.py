"""The one restart policy both control loops follow (core/restarts.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from streamgrid.core.crd import WorkerExit
from streamgrid.core.restarts import Backoff, RestartPolicy, permanent_exit
from streamgrid.gateway.settings import GatewaySettings
from streamgrid.operator.reconcile import jittered_backoff, plan
from streamgrid.operator.settings import OperatorSettings


def test_which_exits_are_for_good() -> None:
    assert permanent_exit(int(WorkerExit.FAILED)) == "the camera refused the stream"
    assert permanent_exit(int(WorkerExit.BAD_SETTINGS)) == "the capture worker refused its settings"
    for code in (WorkerExit.STOPPED, WorkerExit.CRASHED, -9, 137, None):
        assert permanent_exit(code) is None


def test_the_delay_doubles_to_its_cap_with_jitter_around_it() -> None:
    policy = RestartPolicy(0.5, 10.0, limit=3, jitter=0.2)
    assert [policy.base_delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    rng = random.Random(7)
    delays = [policy.delay(4, rng) for _ in range(500)]
    assert all(3.2 <= d <= 4.8 for d in delays)
    assert max(delays) - min(delays) > 1.0  # spread, not one value
    assert not policy.gives_up(3) and policy.gives_up(4)


def test_both_runtimes_take_the_policy_from_their_settings() -> None:
    embedded = GatewaySettings().restart_policy()
    assert (embedded.initial, embedded.cap, embedded.limit, embedded.jitter) == (0.5, 10, 20, 0.2)
    operator = OperatorSettings().restart_policy()
    assert (operator.initial, operator.cap, operator.limit, operator.jitter) == (1, 300, 20, 0.2)


def test_the_operators_jitter_spreads_streams_and_keeps_a_plan_the_same() -> None:
    settings = OperatorSettings(store_url="s3://b/p")
    waits = {jittered_backoff({"metadata": {"uid": f"uid-{i}"}}, 4, settings) for i in range(50)}
    assert len(waits) > 10 and all(6.4 <= w <= 9.6 for w in waits)
    stream = {
        "metadata": {"name": "cam", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {"source": {"url": "rtsp://cam/x"}},
        "status": {
            "state": "Reconnecting",
            "podName": "cam-capture",
            "consecutiveExits": 3,
            "observedGeneration": 1,
        },
    }
    exited = {
        "metadata": {"name": "cam-capture", "annotations": {}},
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"state": {"terminated": {"exitCode": 1}}}],
        },
    }
    now = datetime(2026, 1, 1, tzinfo=UTC)
    first, again = plan(stream, exited, settings, now), plan(stream, exited, settings, now)
    assert first.status["nextAttemptAt"] == again.status["nextAttemptAt"]


@pytest.mark.parametrize("attempts", [1, 5, 40])
def test_a_retrying_loops_backoff_is_capped(attempts: int) -> None:
    backoff = Backoff(0.5, 10.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(attempts)]
    assert all(d <= 12.0 for d in delays)
    backoff.reset()
    assert backoff.next() <= 0.6
