"""``python -m streamgrid.capture.forkserver``: the embedded runtime's template
process. It imports the capture worker once, then forks a worker for each
request of the gateway (core/forking.py), so that the workers share the
imported code and data copy-on-write instead of each importing its own.

A worker is forked twice, template -> intermediate -> worker, and the
intermediate exits at once: the worker is then the server's child (the server
is a child subreaper, gateway/forkserver.py), which waits for it, signals it
and reads its exit status as it would an exec'd worker's, and which it dies
with (PR_SET_PDEATHSIG, asked by the worker's main once it is the server's
child). So the template's own death harms no running worker.

In the worker: its stdout is the pipe the gateway passed, its stdin the
gateway's go-ahead (one byte once the gateway knows the worker's pid: a worker
whose spawn the gateway never heard of exits unseen), the stream's environment
replaces the template's, and its /proc cmdline and environ read as an exec'd
worker's (``python -m streamgrid.capture``, ``STREAMGRID_STREAM_ID=<id>``:
what the next server and `ps` look for). Then it runs ``streamgrid.capture``'s
main, the one a capture pod runs, and exits with its code.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import logging
import os
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from ..core import forking
from ..core.crd import WorkerExit
from ..core.logs import configure_logging, log_event

# What a worker imports on its way to its first sample: the worker's main and,
# below it, PyAV and the C receive loop (imported only when used).
PRELOAD = (
    "streamgrid.capture.__main__",
    "streamgrid.capture._rtp",
)

log = logging.getLogger("streamgrid.capture")

_M_MMAP_THRESHOLD = -3
# Allocations this large or larger get their own mapping, given back at free.
# glibc's threshold otherwise rises to the largest block freed, and a worker
# frees a picture's BGR copy (2.7 MB at 720p) each time it keeps one: later
# ones then come from the heap, whose freed pages stay resident. Below it, the
# decoder's planes are reused from the heap, no page faults. Measured, 4
# workers on this machine: 14.5-15.4 -> 12.9-13.9 MB private each, CPU the same.
MMAP_THRESHOLD = 1024 * 1024


def main() -> int:
    sock = socket.socket(fileno=int(os.environ[forking.SOCKET_FD_ENV]))
    # A terminal's Ctrl-C reaches the whole process group: the server decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)  # inherited by every worker
    # No collection from here on (it would write to every object's header, and
    # free holes that allocations then fill): the imported objects stay on
    # pages the workers share, and gc.freeze() keeps the workers' collector
    # off them too.
    gc.disable()
    for name in PRELOAD:
        with contextlib.suppress(ImportError):  # an extension not built: its worker says so
            importlib.import_module(name)
    gc.freeze()
    if not _reply(sock, {"ready": os.getpid()}):
        return 0
    while True:
        try:
            request = forking.receive(sock, max_fds=2)
        except forking.ProtocolError as exc:
            answer: dict[str, object] = {"error": str(exc)}
        except OSError:
            return 0
        else:
            if request is None:
                return 0  # the server is gone
            answer = _serve(request, sock)
        if not _reply(sock, answer):
            return 0


def _serve(request: tuple[dict[str, Any], list[int]], sock: socket.socket) -> dict[str, object]:
    """One request: fork its worker; the answer. The fds passed are closed here
    (the worker has its own)."""
    message, fds = request
    try:
        env = message.get("env")
        if len(fds) != 2 or not isinstance(env, dict):
            return {"error": "fork server: a request needs env and two fds"}
        try:
            environ = {str(k): str(v) for k, v in env.items()}
            return {"pid": fork_worker(environ, fds[0], fds[1], sock)}
        except OSError as exc:
            return {"error": f"cannot fork a worker: {exc.strerror or exc}"}
    finally:
        for fd in fds:
            os.close(fd)


def _reply(sock: socket.socket, message: dict[str, object]) -> bool:
    """False when the server is gone."""
    try:
        forking.send(sock, message)
    except OSError:
        return False
    return True


def fork_worker(env: dict[str, str], stdout: int, go: int, sock: socket.socket) -> int:
    """Fork a worker through a short-lived intermediate; the worker's pid."""
    read_end, write_end = os.pipe()
    try:
        intermediate = os.fork()
        if intermediate == 0:
            os.close(read_end)
            _intermediate(env, stdout, go, sock, write_end)
        os.close(write_end)
        write_end = -1
        said = b""
        while chunk := os.read(read_end, 64):
            said += chunk
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    os.waitpid(intermediate, 0)
    text = said.decode(errors="replace")
    if not text.isdigit():
        raise OSError(text or "the intermediate process died")
    return int(text)


def _intermediate(
    env: dict[str, str], stdout: int, go: int, sock: socket.socket, tell: int
) -> NoReturn:
    code = 1
    try:
        me = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            os.write(tell, (exc.strerror or str(exc)).encode())
        else:
            if pid == 0:
                os.close(tell)
                _worker(env, stdout, go, sock, me)
            os.write(tell, str(pid).encode())
            code = 0
    finally:
        os._exit(code)


def _worker(
    env: dict[str, str], stdout: int, go: int, sock: socket.socket, intermediate: int
) -> NoReturn:
    code: int = WorkerExit.CRASHED
    try:
        sock.close()
        os.dup2(stdout, 1)
        os.dup2(go, 0)
        os.close(stdout)
        os.close(go)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(env)
        renamed = look_like_exec(env.get(forking.STREAM_ID_ENV, ""))
        gc.enable()
        # The go-ahead comes once the gateway has our pid, and the intermediate
        # is gone by then: this process is the server's child, and the
        # parent-death signal that main asks for is tied to the server.
        if not os.read(0, 1) or os.getppid() == intermediate:
            os._exit(WorkerExit.STOPPED)
        if not renamed:
            configure_logging("capture")
            log_event(log, "worker.not_renamed", logging.WARNING, pid=os.getpid())
        from .__main__ import main as capture_main

        code = capture_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else WorkerExit.CRASHED
    except BaseException:  # noqa: BLE001 - a bug: its traceback, and the exit code says so
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


_SUFFIX = forking.MODULE.removeprefix("streamgrid.capture").encode()  # b".forkserver"


def look_like_exec(stream_id: str) -> bool:
    """Rewrite this process's /proc cmdline and environ in place (the memory
    the kernel reads them from, as PostgreSQL's backends set their `ps`
    line): ``-m streamgrid.capture.forkserver`` becomes ``-m
    streamgrid.capture``, and the room the template reserved in
    ``STREAMGRID_STREAM_ID`` takes the stream's id. False if either failed."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        # After the ")" of comm, field 3 (state) is at 0: arg_start is field 48.
        arg_start, arg_end, env_start, env_end = (int(v) for v in fields[45:49])
        value = stream_id.encode()
        room = f"{forking.STREAM_ID_ENV}={forking.STREAM_ID_ROOM}".encode()
        if not value or len(value) > len(forking.STREAM_ID_ROOM):
            return False
        mem = os.open("/proc/self/mem", os.O_RDWR)
        try:
            args = os.pread(mem, arg_end - arg_start, arg_start)
            module = f"\0{forking.MODULE}\0".encode()
            at = args.find(module)
            environ = os.pread(mem, env_end - env_start, env_start)
            entries = environ.split(b"\0")
            if at < 0 or room not in entries:
                return False
            os.pwrite(mem, b"\0" * len(_SUFFIX), arg_start + at + len(module) - 1 - len(_SUFFIX))
            offset = sum(len(e) + 1 for e in entries[: entries.index(room)])
            offset += len(forking.STREAM_ID_ENV) + 1
            os.pwrite(
                mem, value + b"\0" * (len(forking.STREAM_ID_ROOM) - len(value)), env_start + offset
            )
        finally:
            os.close(mem)
    except (OSError, ValueError):
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
