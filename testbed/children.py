"""The capture workers a server runs, found among its own children only."""

from __future__ import annotations

from pathlib import Path


def child_pids(pid: int) -> set[int]:
    """Direct children of ``pid``, from each of its threads (workers are
    spawned from supervisor threads)."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children.update(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    return children


def capture_workers(server_pid: int) -> set[int]:
    """The server's children that are (still) ``python -m streamgrid.capture``."""
    return {pid for pid in child_pids(server_pid) if is_capture_worker(pid)}


def is_capture_worker(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"streamgrid.capture" in argv


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not reaped yet, is not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] not in ("Z", "X")


def fork_servers(server_pid: int) -> set[int]:
    """The server's children that are its template process (gateway/forkserver.py)."""
    found = set()
    for pid in child_pids(server_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamgrid.capture.forkserver" in argv:
            found.add(pid)
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """/proc/<pid>/status's Rss* and smaps_rollup's fields, in kB; ``Uss`` the
    process's private pages (what it alone costs)."""
    fields: dict[str, int] = {}
    for name in ("status", "smaps_rollup"):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            key, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[key] = int(parts[0])
    fields["Uss"] = fields["Private_Clean"] + fields["Private_Dirty"]
    return fields
