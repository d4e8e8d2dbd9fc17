"""Leader election with a ``coordination.k8s.io/v1`` Lease, as
controller-runtime and client-go do it: every replica watches and keeps its
cache warm; only the holder of the Lease reconciles, writes or posts Events.

- A replica takes the Lease when it is free: nobody holds it, or its holder
  has not renewed it for ``lease_seconds`` *as this replica observed* (the
  time it last saw the record change, on its own monotonic clock, so no
  two clocks are compared).
- The holder renews it every ``retry_seconds``. If it has not renewed for
  ``renew_deadline_seconds`` (shorter than the lease), it stops leading: it
  writes nothing more from then on, before anyone else may take the Lease.
- Each write is a compare-and-swap on the Lease's resourceVersion, so two
  replicas racing for a free Lease cannot both win.
- A graceful stop releases the Lease (holder cleared), so the standby takes
  over within ``retry_seconds`` rather than a whole lease.

Defaults: lease 15 s, renew deadline 10 s, retry 2 s (controller-runtime's).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..core.logs import log_event

log = logging.getLogger("streamgrid.operator")


class LeaseApi(Protocol):
    """What the elector needs of the API server (kubeapi.LeaseClient)."""

    def read(self) -> dict[str, Any] | None:
        """The Lease, or None when there is none."""

    def create(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        """Creates it; None when someone else did first (409)."""

    def replace(self, lease: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
        """Writes ``spec`` over ``lease`` at its resourceVersion; None on a
        conflict (409: someone wrote it since)."""


@dataclass(frozen=True)
class Timing:
    lease_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0


def micro_time(moment: datetime) -> str:
    """A Lease's MicroTime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: LeaseApi,
        identity: str,
        timing: Timing = Timing(),
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not timing.retry_seconds < timing.renew_deadline_seconds < timing.lease_seconds:
            raise ValueError("leader election needs retry < renew deadline < lease")
        self.api, self.identity, self.timing = api, identity, timing
        self.on_change, self._clock = on_change, clock
        self._renewed_at: float | None = None  # our clock, when we last held it for sure
        self._observed: tuple[str, float] | None = None  # (record as last seen, when seen)
        self._lock = threading.Lock()
        self._leading = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- asked by everyone who writes --------------------------------------------
    def is_leader(self) -> bool:
        """True while this replica may write: it renewed within the renew
        deadline (checked at the moment of asking, not only by the loop)."""
        with self._lock:
            renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.timing.renew_deadline_seconds

    # -- the loop --------------------------------------------------------------
    def start(self) -> LeaderElector:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        if release and self.is_leader():
            self._release()
        self._set_leading(False)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.try_acquire_or_renew()
            except Exception as exc:  # noqa: BLE001 - the API server's trouble: next round
                log_event(log, "leader.error", logging.WARNING, error=str(exc)[:300])
            self._set_leading(self.is_leader())
            self._stop.wait(self.timing.retry_seconds)

    def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease after it."""
        now = self._clock()
        lease = self.api.read()
        spec = (lease or {}).get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = repr(sorted(spec.items()))
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, now)  # the record changed: its holder is alive
        ours = holder == self.identity
        duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_seconds)
        expired = not holder or now - self._observed[1] >= duration
        if lease is not None and not ours and not expired:
            return False
        wall = datetime.now(UTC)
        new_spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timing.lease_seconds),
            "renewTime": micro_time(wall),
            "acquireTime": spec.get("acquireTime") if ours else micro_time(wall),
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if ours else 1),
        }
        if lease is None:
            new_spec["leaseTransitions"] = 0
            written = self.api.create(new_spec)
        else:
            written = self.api.replace(lease, new_spec)
        if written is None:
            return False  # someone else wrote it first: theirs, this round
        with self._lock:
            self._renewed_at = now
        self._observed = (repr(sorted((written.get("spec") or new_spec).items())), now)
        if not ours:
            log_event(log, "leader.acquired", identity=self.identity)
        return True

    def _release(self) -> None:
        try:
            lease = self.api.read()
            spec = dict((lease or {}).get("spec") or {})
            if lease is not None and spec.get("holderIdentity") == self.identity:
                spec.update(holderIdentity=None, leaseDurationSeconds=1)
                self.api.replace(lease, spec)
                log_event(log, "leader.released", identity=self.identity)
        except Exception as exc:  # noqa: BLE001 - it expires on its own anyway
            log_event(log, "leader.release_failed", logging.WARNING, error=str(exc)[:300])
        with self._lock:
            self._renewed_at = None

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        if not leading:
            log_event(log, "leader.lost", logging.WARNING, identity=self.identity)
        if self.on_change is not None:
            self.on_change(leading)
