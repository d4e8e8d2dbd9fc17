"""Workers forked from a template process that imported the capture worker
once (capture/forkserver.py; the protocol: core/forking.py), so the imports'
code and data are shared copy-on-write between all workers, not paid by each.

This process becomes a child subreaper (PR_SET_CHILD_SUBREAPER) before it
starts the template: each worker, forked by a short-lived intermediate, is
then re-parented to us, so we wait for it, signal it (through a pidfd: never
another process that took its pid) and read its exit status as we would an
exec'd worker's, and it dies with us (it asks for PR_SET_PDEATHSIG once it is
our child). The template is started at the first spawn; one that died (killed,
out of memory) is started again at the next, and the workers it forked run
on, since they are not its children.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from typing import IO

from ..core import forking
from ..core.logs import log_event

log = logging.getLogger("streamgrid.gateway")

_PR_SET_CHILD_SUBREAPER = 36
START_TIMEOUT = 60.0  # the template's imports, on a loaded machine
REPLY_TIMEOUT = 30.0  # a fork takes milliseconds


class ForkUnavailable(OSError):
    """This process cannot be the workers' reaper: no fork server here."""


def become_subreaper() -> None:
    """Orphaned descendants (our forked workers) are re-parented to us."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise ForkUnavailable(errno, f"PR_SET_CHILD_SUBREAPER: {os.strerror(errno)}")
    if not hasattr(os, "pidfd_open"):
        raise ForkUnavailable("no pidfd_open on this system")


class ForkedWorker:
    """A worker the template forked and this process reaps: the shape of
    subprocess.Popen that the supervisor uses (workers.WorkerProcess)."""

    def __init__(self, pid: int, stdout: IO[str]) -> None:
        self.pid = pid
        self.stdout: IO[str] | None = stdout
        self.returncode: int | None = None
        self._lock = threading.Lock()  # one waitpid at a time
        # Opened while the worker cannot be reaped by anyone but us, so it
        # names this process for as long as the handle lives.
        self._pidfd = os.pidfd_open(pid)
        weakref.finalize(self, os.close, self._pidfd)

    def poll(self) -> int | None:
        if self.returncode is None and self._lock.acquire(blocking=False):
            try:
                self._reap(os.WNOHANG)
            finally:
                self._lock.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and timeout is not None:
            ready = select.poll()
            ready.register(self._pidfd, select.POLLIN)  # readable once it has exited
            if not ready.poll(max(0.0, timeout) * 1000):
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
        with self._lock:
            if self.returncode is None:
                self._reap(0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # it has exited
            signal.pidfd_send_signal(self._pidfd, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # not ours after all: gone, its status unknown
            self.returncode = 255
            return
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)


class ForkServer:
    """The gateway's side of the template process (a workers.Spawner)."""

    def __init__(self) -> None:
        become_subreaper()
        self._lock = threading.Lock()  # one request at a time
        self._template: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self.starts = 0  # templates started (one more after each death)

    @property
    def template_pid(self) -> int | None:
        template = self._template
        return template.pid if template is not None and template.poll() is None else None

    def spawn(self, env: dict[str, str]) -> ForkedWorker:
        stdout_read, stdout_write = os.pipe()
        go_read, go_write = os.pipe()
        unused = [stdout_read, stdout_write, go_read, go_write]
        try:
            with self._lock:
                pid = self._ask(env, [stdout_write, go_read])
            for fd in (stdout_write, go_read):  # the worker's ends: it has them now
                unused.remove(fd)
                os.close(fd)
            try:
                stdout = open(stdout_read, encoding="utf-8", errors="replace")  # noqa: SIM115
                worker = ForkedWorker(pid, stdout)
            except OSError:  # EMFILE: without its go-ahead, the worker exits at once
                os.close(go_write)
                unused.remove(go_write)
                os.waitpid(pid, 0)
                raise
            unused.remove(stdout_read)  # the worker's stdout file owns it
            with contextlib.suppress(BrokenPipeError):  # it died already: its exit says so
                os.write(go_write, b"1")  # now that we hold its pid, it may start
            return worker
        finally:
            for fd in unused:
                os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._discard(graceful=True)

    def _ask(self, env: dict[str, str], fds: list[int]) -> int:
        """The pid of a new worker; a template found dead is started again, once."""
        for _ in range(2):
            sock = self._running()
            try:
                forking.send(sock, {"env": env}, fds)
                reply = forking.receive(sock)
            except forking.ProtocolError:
                raise
            except OSError:  # a broken pipe, a reset, a timeout
                reply = None
            if reply is None:  # it died while asked (or does not answer)
                log_event(log, "forkserver.died", logging.WARNING, pid=self.template_pid)
                self._discard(graceful=False)
                continue
            message, _ = reply
            if isinstance(message.get("pid"), int):
                return int(message["pid"])
            raise OSError(str(message.get("error", "the fork server gave no pid")))
        raise OSError("the fork server died twice in a row")

    def _running(self) -> socket.socket:
        """The template's socket, the template started if none runs."""
        template = self._template
        if self._sock is not None and template is not None:
            if template.poll() is None:
                return self._sock
            log_event(
                log, "forkserver.died", logging.WARNING, pid=template.pid, code=template.returncode
            )
        self._discard(graceful=False)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env[forking.SOCKET_FD_ENV] = str(theirs.fileno())
        env[forking.STREAM_ID_ENV] = forking.STREAM_ID_ROOM
        started = time.monotonic()
        try:
            self._template = subprocess.Popen(
                [sys.executable, "-m", forking.MODULE],
                env=env,
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._sock = ours
        self.starts += 1
        ours.settimeout(START_TIMEOUT)
        try:
            ready = forking.receive(ours)
        except OSError:
            ready = None
        if ready is None or "ready" not in ready[0]:
            self._discard(graceful=False)
            raise OSError("the fork server did not start")
        ours.settimeout(REPLY_TIMEOUT)
        log_event(
            log,
            "forkserver.started",
            pid=self._template.pid,
            seconds=round(time.monotonic() - started, 2),
        )
        return ours

    def _discard(self, graceful: bool) -> None:
        """End the template (its socket closed, it exits; else it is killed)."""
        sock, template = self._sock, self._template
        self._sock = self._template = None
        if sock is not None:
            sock.close()
        if template is None:
            return
        if not graceful:
            template.kill()
        try:
            template.wait(5.0)
        except subprocess.TimeoutExpired:
            template.kill()
            template.wait()
