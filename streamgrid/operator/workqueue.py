"""Which streams to reconcile next: a work queue as Kubernetes controllers
keep one (client-go's workqueue).

- A key waits in the queue at most once, however many events name it.
- A key is handed to one worker at a time; added while a worker has it, it
  is handed out again once that worker is done (the newer event is seen).
- ``add_after``: a key due later (a crashed pod's backoff, a TTL); only the
  earliest due time of a key is kept.
- ``retry``: a key whose reconcile failed comes back after a per-key
  backoff (1 s doubling to 60 s), reset by ``forget``.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
    ) -> None:
        self._clock = clock
        self._retry_initial, self._retry_max = retry_initial, retry_max
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._tiebreak = 0
        self._failures: dict[K, int] = {}
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def idle(self) -> bool:
        """Nothing queued and nothing being worked on (delayed keys aside)."""
        with self._cond:
            return not self._queue and not self._active

    def add(self, key: K) -> None:
        with self._cond:
            self._add(key)

    def add_many(self, keys: list[K]) -> None:
        with self._cond:
            for key in keys:
                self._add(key)

    def add_after(self, key: K, seconds: float) -> None:
        if seconds <= 0:
            self.add(key)
            return
        due = self._clock() + seconds
        with self._cond:
            if self._closed or self._due.get(key, float("inf")) <= due:
                return
            self._due[key] = due
            self._tiebreak += 1
            heapq.heappush(self._heap, (due, self._tiebreak, key))
            self._cond.notify()

    def retry(self, key: K) -> float:
        """Hand ``key`` out again after its backoff; returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = float(min(self._retry_initial * 2 ** min(failures, 16), self._retry_max))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def get(self) -> K | None:
        """The next key (now marked active), or None once closed."""
        with self._cond:
            while True:
                self._promote_due()
                if self._queue:
                    key = self._queue.popleft()
                    self._queued.discard(key)
                    self._active.add(key)
                    return key
                if self._closed:
                    return None
                wait = self._heap[0][0] - self._clock() if self._heap else None
                self._cond.wait(None if wait is None else max(wait, 0.001))

    def done(self, key: K) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add(key)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _add(self, key: K) -> None:
        if self._closed:
            return
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.append(key)
            self._cond.notify()

    def _promote_due(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) == due:  # not superseded by an earlier one
                del self._due[key]
                self._add(key)
