"""The control loops' one policy for a capture worker that exits: which exits
are for good, how long to wait before the next worker, and when to give up.
The embedded supervisor (gateway/supervisor.py) and the operator
(operator/reconcile.py) both follow it, so a camera behaves the same under
either runtime.

- An exit that a restart cannot mend (PERMANENT_EXITS: the camera refused
  the stream, the worker refused its settings) fails the stream at once.
- Any other exit is restarted after a capped exponential backoff with
  jitter (so workers that fell over together, in a shared outage, do not
  come back in lockstep): ``initial``, twice that, four times ... up to
  ``cap``, each times a factor in [1 - jitter, 1 + jitter].
- ``limit`` exits in a row, with no Active run between (a healthy run ends a
  crash loop and resets the backoff), fail the stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .crd_names import WorkerExit

PERMANENT_EXITS: dict[int, str] = {
    WorkerExit.FAILED: "the camera refused the stream",
    WorkerExit.BAD_SETTINGS: "the capture worker refused its settings",
}
DEFAULT_JITTER = 0.2


def permanent_exit(code: int | None) -> str | None:
    """Why an exit is for good, or None when a restart may mend it."""
    return PERMANENT_EXITS.get(code) if code is not None else None


@dataclass(frozen=True)
class RestartPolicy:
    initial: float
    cap: float
    limit: int
    jitter: float = DEFAULT_JITTER

    def base_delay(self, exits_in_a_row: int) -> float:
        """The delay before jitter: initial, 2x, 4x ... up to the cap."""
        exponent = max(0, min(exits_in_a_row - 1, 32))
        return float(min(self.initial * 2**exponent, self.cap))

    def delay(self, exits_in_a_row: int, rng: random.Random) -> float:
        """The wait before the next worker: the base delay, jittered."""
        base = self.base_delay(exits_in_a_row)
        return base * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter) if self.jitter else base

    def gives_up(self, exits_in_a_row: int) -> bool:
        return exits_in_a_row > self.limit


@dataclass
class Backoff:
    """Capped exponential backoff with jitter for a loop that retries on its
    own (reconnecting to a camera, writing to a store): ``next()`` the delay,
    ``reset()`` after a success."""

    initial: float
    cap: float
    attempt: int = 0
    jitter: float = DEFAULT_JITTER
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        delay = min(self.cap, self.initial * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return float(delay * self.rng.uniform(1.0 - self.jitter, 1.0 + self.jitter))

    def reset(self) -> None:
        self.attempt = 0
