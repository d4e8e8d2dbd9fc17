"""How the embedded runtime gets a capture worker process: forked from the
template process (gateway/forkserver.py), or a fresh ``python -m
streamgrid.capture`` (``worker_start=exec``). Either way the worker runs the
same ``streamgrid.capture`` main a capture pod runs, with its settings in its
environment (the camera URL never on a command line) and its progress lines
on its stdout."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import IO, Protocol

from ..core.logs import log_event
from .forkserver import ForkServer, ForkUnavailable
from .settings import GatewaySettings

log = logging.getLogger("streamgrid.gateway")


class WorkerProcess(Protocol):
    """What a supervisor holds of its worker: subprocess.Popen's shape."""

    @property
    def pid(self) -> int: ...

    @property
    def stdout(self) -> IO[str] | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int:
        """The exit code; subprocess.TimeoutExpired after ``timeout``."""

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class Spawner(Protocol):
    def spawn(self, env: dict[str, str]) -> WorkerProcess:
        """A worker running with ``env`` as its whole environment; OSError
        when none can be started (EMFILE, ENOMEM)."""

    def close(self) -> None: ...


class ExecSpawner:
    """Each worker a new interpreter: it pays the imports itself."""

    def spawn(self, env: dict[str, str]) -> WorkerProcess:
        return subprocess.Popen(
            [sys.executable, "-m", "streamgrid.capture"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def close(self) -> None:
        pass


def open_spawner(settings: GatewaySettings) -> Spawner:
    """The fork server unless told otherwise or this process cannot reap
    forked workers (then each worker is exec'd, as before)."""
    if settings.worker_start == "fork":
        try:
            return ForkServer()
        except ForkUnavailable as exc:
            log_event(log, "forkserver.unavailable", logging.WARNING, error=str(exc))
    return ExecSpawner()
