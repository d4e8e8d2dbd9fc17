"""Leader election over a Lease (operator/leader.py), against a Lease store
that behaves as the API server's: compare-and-swap on resourceVersion."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest

from streamgrid.operator.leader import LeaderElector, Timing


class Leases:
    """One Lease, as the API server keeps it."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.lock = threading.Lock()
        self.down = False  # the API server cannot be reached

    def read(self) -> dict[str, Any] | None:
        if self.down:
            raise OSError("connection refused")
        with self.lock:
            return copy.deepcopy(self.lease)

    def create(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        if self.down:
            raise OSError("connection refused")
        with self.lock:
            if self.lease is not None:
                return None
            self.version += 1
            self.lease = {"metadata": {"resourceVersion": str(self.version)}, "spec": spec}
            return copy.deepcopy(self.lease)

    def replace(self, lease: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
        if self.down:
            raise OSError("connection refused")
        with self.lock:
            if self.lease is None or lease["metadata"] != self.lease["metadata"]:
                return None  # 409: written since
            self.version += 1
            self.lease = {"metadata": {"resourceVersion": str(self.version)}, "spec": spec}
            return copy.deepcopy(self.lease)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def electors(leases: Leases, clock: Clock) -> tuple[LeaderElector, LeaderElector]:
    return (
        LeaderElector(leases, "a", Timing(15, 10, 2), clock=clock),
        LeaderElector(leases, "b", Timing(15, 10, 2), clock=clock),
    )


def test_one_leads_and_the_other_waits() -> None:
    leases, clock = Leases(), Clock()
    a, b = electors(leases, clock)
    assert a.try_acquire_or_renew() and a.is_leader()
    assert not b.try_acquire_or_renew() and not b.is_leader()
    for _ in range(20):  # renewing every 2 s, a keeps it
        clock.now += 2
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    assert leases.lease is not None and leases.lease["spec"]["holderIdentity"] == "a"


def test_the_standby_takes_over_a_lease_not_renewed_within_its_duration() -> None:
    """kill -9 of the leader: nobody renews; the standby waits out the lease
    as it observed it, then takes it (within lease + retry: 17 s < 20 s)."""
    leases, clock = Leases(), Clock()
    a, b = electors(leases, clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    waited = 0.0
    while not b.try_acquire_or_renew():
        clock.now += 2
        waited += 2
        assert waited <= 17
    assert waited >= 14 and b.is_leader()
    assert leases.lease is not None and leases.lease["spec"]["leaseTransitions"] == 1
    # The old leader, had it lived, knows it lost: it stopped writing long ago.
    assert not a.is_leader()


def test_a_leader_that_cannot_renew_stops_before_its_lease_expires() -> None:
    leases, clock = Leases(), Clock()
    a, b = electors(leases, clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    leases.down = True
    stopped_at = None
    for step in range(1, 20):
        clock.now += 1
        with pytest.raises(OSError):
            a.try_acquire_or_renew()
        if not a.is_leader() and stopped_at is None:
            stopped_at = step
    assert stopped_at is not None and stopped_at <= 10  # the renew deadline
    leases.down = False
    # Nobody may take it before 15 s of silence: a stopped writing at 10.
    assert stopped_at < 15


def test_two_racing_for_a_free_lease_cannot_both_win() -> None:
    leases, clock = Leases(), Clock()
    a, b = electors(leases, clock)
    barrier = threading.Barrier(2)
    won: list[bool] = []

    def race(elector: LeaderElector) -> None:
        barrier.wait()
        won.append(elector.try_acquire_or_renew())

    threads = [threading.Thread(target=race, args=(e,)) for e in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False, True]
    assert [a.is_leader(), b.is_leader()].count(True) == 1


def test_a_graceful_stop_hands_over_within_a_retry() -> None:
    leases, clock = Leases(), Clock()
    a, b = electors(leases, clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    a.stop(release=True)
    assert not a.is_leader()
    assert b.try_acquire_or_renew()  # no waiting out the lease


def test_the_timings_must_nest() -> None:
    with pytest.raises(ValueError, match="retry < renew deadline < lease"):
        LeaderElector(Leases(), "a", Timing(10, 10, 2))
