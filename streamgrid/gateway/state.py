"""The embedded runtime's stream records, kept in SQLite so a restart of
``streamgrid serve`` (SIGTERM or kill -9) forgets nothing.

One file, ``<state dir>/streamgrid.db`` (the state dir defaults to the local
store's directory), in WAL mode, created with mode 0600 because it holds the
camera URLs with their credentials. Those live in their own table
(``credentials``); ``streams`` holds only the masked URL, so what is listed
or logged from a record never carries a secret.

Times are wall-clock (unix seconds): monotonic values mean nothing to the
next process. Writes are few: on start, on a state change, on stop, and the
frame count at most once a second per stream (and before a count is shown),
never on every progress line (RecordWriter).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core.geometry import GridGeometry
from ..core.logs import log_event
from ..core.models import StreamState
from .requests import StartRequest
from .settings import GatewaySettings

log = logging.getLogger("streamgrid.gateway")

DB_NAME = "streamgrid.db"
LOCK_NAME = "streamgrid.lock"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    stream_id       TEXT PRIMARY KEY,
    url             TEXT NOT NULL,              -- credentials masked
    params          TEXT NOT NULL,              -- the start request but its URL, JSON
    state           TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    frames_captured INTEGER NOT NULL DEFAULT 0,
    kept            INTEGER NOT NULL DEFAULT 0,
    codec           TEXT NOT NULL DEFAULT '',
    started_at      REAL NOT NULL,
    stopped_at      REAL,
    last_frame_at   REAL,
    restarts        INTEGER NOT NULL DEFAULT 0,
    worker_pid      INTEGER                     -- the last worker spawned, if any
);
CREATE TABLE IF NOT EXISTS credentials (
    stream_id  TEXT PRIMARY KEY REFERENCES streams(stream_id) ON DELETE CASCADE,
    source_url TEXT NOT NULL                    -- as given, credentials and all
);
"""


def state_dir_for(settings: GatewaySettings) -> Path:
    """``state_dir`` if set; else the local store's directory; else (an S3
    store) ``./streamgrid-state``."""
    if settings.state_dir is not None:
        return settings.state_dir
    parts = urlsplit(settings.store_url)
    if parts.scheme == "":
        return Path(settings.store_url)
    if parts.scheme == "file":
        return Path(parts.path)
    return Path("streamgrid-state")


def request_params(request: StartRequest) -> dict[str, Any]:
    """A start request as JSON, without its URL (that goes to ``credentials``)."""
    params = dataclasses.asdict(request)
    del params["rtsp_url"]
    return params


def request_from(url: str, params: dict[str, Any]) -> StartRequest:
    """The inverse of request_params; fields a later version dropped are ignored."""
    known = {f.name for f in dataclasses.fields(StartRequest)}
    values = {k: v for k, v in params.items() if k in known and k != "rtsp_url"}
    if isinstance(values.get("geometry"), dict):
        geometry_fields = {f.name for f in dataclasses.fields(GridGeometry)}
        values["geometry"] = GridGeometry(
            **{k: v for k, v in values["geometry"].items() if k in geometry_fields}
        )
    return StartRequest(rtsp_url=url, **values)


@dataclass
class StreamRecord:
    stream_id: str
    url: str  # masked
    request: StartRequest  # with the URL as given (or the masked one, if lost)
    source_url_known: bool  # False: the credentials row is missing
    state: StreamState
    reason: str
    frames_captured: int
    kept: int
    codec: str
    started_at: float
    stopped_at: float | None
    last_frame_at: float | None
    restarts: int
    worker_pid: int | None


class StateDirBusy(RuntimeError):
    """Another server holds this state directory: two would resume the same
    streams and each spawn their workers."""


class StreamRecords:
    """Thread-safe: one connection, one lock; every write is one transaction.
    One server per state directory (an exclusive lock, released by the kernel
    however the server ends)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / DB_NAME
        self._lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise StateDirBusy(
                f"another streamgrid serve is using the state directory {directory}"
            ) from None
        # Created 0600 before SQLite opens it (its -wal and -shm files take
        # the database's mode); an older, wider file is narrowed.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit survives the process being killed (not a power cut).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # A deleted record's credentials are overwritten, not left in free pages.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (a full disk) can leave the transaction
                # open: end it, or every later BEGIN fails until a restart.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
            os.close(self._lock_fd)  # releases the directory

    # -- writes --------------------------------------------------------------
    def insert(
        self, stream_id: str, masked_url: str, request: StartRequest, started_at: float
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO streams (stream_id, url, params, state, started_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    stream_id,
                    masked_url,
                    json.dumps(request_params(request)),
                    StreamState.CONNECTING.value,
                    started_at,
                ),
            )
            db.execute(
                "INSERT INTO credentials (stream_id, source_url) VALUES (?, ?)",
                (stream_id, request.rtsp_url),
            )

    def update(self, stream_id: str, **fields: Any) -> None:
        """Set some columns of one record (names are ours, never a client's)."""
        self.update_many([(stream_id, fields)])

    def update_many(self, changes: Iterable[tuple[str, dict[str, Any]]]) -> None:
        with self._transaction() as db:
            for stream_id, fields in changes:
                if not fields:
                    continue
                unknown = set(fields) - _UPDATABLE
                if unknown:
                    raise ValueError(f"not a stream record column: {sorted(unknown)}")
                # A count only goes up, whatever order two writers commit in.
                columns = ", ".join(
                    f"{name} = MAX({name}, ?)" if name == "frames_captured" else f"{name} = ?"
                    for name in fields
                )
                values = [v.value if isinstance(v, StreamState) else v for v in fields.values()]
                db.execute(
                    f"UPDATE streams SET {columns} WHERE stream_id = ?",
                    (*values, stream_id),
                )

    def delete(self, stream_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM credentials WHERE stream_id = ?", (stream_id,))
            db.execute("DELETE FROM streams WHERE stream_id = ?", (stream_id,))

    # -- reads ---------------------------------------------------------------
    def load(self) -> list[StreamRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT s.stream_id, s.url, s.params, s.state, s.reason, s.frames_captured,"
                " s.kept, s.codec, s.started_at, s.stopped_at, s.last_frame_at, s.restarts,"
                " s.worker_pid, c.source_url"
                " FROM streams s LEFT JOIN credentials c USING (stream_id)"
                " ORDER BY s.started_at"
            ).fetchall()
        return [_record(row) for row in rows]


_UPDATABLE = frozenset(
    {
        "state",
        "reason",
        "frames_captured",
        "kept",
        "codec",
        "stopped_at",
        "last_frame_at",
        "restarts",
        "worker_pid",
    }
)


def _record(row: tuple[Any, ...]) -> StreamRecord:
    (stream_id, url, params, state, reason, frames, kept, codec) = row[:8]
    (started_at, stopped_at, last_frame_at, restarts, worker_pid, source_url) = row[8:]
    known = source_url is not None
    try:
        request = request_from(source_url if known else url, json.loads(params))
    except (ValueError, TypeError):
        # Unreadable parameters (a hand-edited file): the defaults, and the
        # stream is not resumed.
        request, known = StartRequest(rtsp_url=url), False
    try:
        parsed_state = StreamState(state)
    except ValueError:
        parsed_state = StreamState.FAILED
    return StreamRecord(
        stream_id=stream_id,
        url=url,
        request=request,
        source_url_known=known,
        state=parsed_state,
        reason=reason,
        frames_captured=int(frames),
        kept=int(kept),
        codec=codec,
        started_at=float(started_at),
        stopped_at=None if stopped_at is None else float(stopped_at),
        last_frame_at=None if last_frame_at is None else float(last_frame_at),
        restarts=int(restarts),
        worker_pid=None if worker_pid is None else int(worker_pid),
    )


PERSIST_COUNT_EVERY = 1.0  # seconds between count writes per stream (state changes: at once)


@dataclass(frozen=True)
class Counts:
    """A stream's numbers that change with every sample."""

    frames_captured: int
    kept: int
    last_frame_at: float | None


class RecordWriter:
    """The embedded runtime's writes to its records, as its control loops
    need them: a failing disk is logged, never raised (a supervisor must keep
    reading its worker's pipe), and a stream's count is written at most once
    a second (``count_due``), and always before it is shown."""

    def __init__(self, records: StreamRecords) -> None:
        self.records = records
        self._lock = threading.Lock()
        # Per stream: the count last written, and when (monotonic).
        self._persisted: dict[str, tuple[int, float]] = {}

    def written(self, stream_id: str, frames_captured: int) -> None:
        """A count the records hold already (a resumed stream's)."""
        self._note([(stream_id, frames_captured)])

    def write(self, stream_id: str, **fields: Any) -> None:
        """One record update."""
        try:
            self.records.update(stream_id, **fields)
        except sqlite3.Error as exc:
            log_event(
                log, "records.write_failed", logging.WARNING, stream_id=stream_id, error=str(exc)
            )
            return
        if "frames_captured" in fields:  # what write_counts need not write again
            self._note([(stream_id, int(fields["frames_captured"]))])

    def delete(self, stream_id: str) -> None:
        try:
            self.records.delete(stream_id)
        except sqlite3.Error as exc:
            log_event(
                log, "records.write_failed", logging.WARNING, stream_id=stream_id, error=str(exc)
            )
        with self._lock:
            self._persisted.pop(stream_id, None)

    def count_due(self, stream_id: str) -> bool:
        with self._lock:
            _, at = self._persisted.get(stream_id, (0, 0.0))
        return time.monotonic() - at >= PERSIST_COUNT_EVERY

    def write_counts(self, counts: list[tuple[str, Counts]], force: bool = False) -> None:
        """The counts that went up since written (all of them with ``force``),
        in one transaction."""
        with self._lock:
            changed = [
                (stream_id, c)
                for stream_id, c in counts
                if force or c.frames_captured > self._persisted.get(stream_id, (0, 0.0))[0]
            ]
        if not changed:
            return
        try:
            self.records.update_many(
                (
                    stream_id,
                    {
                        "frames_captured": c.frames_captured,
                        "kept": c.kept,
                        "last_frame_at": c.last_frame_at,
                    },
                )
                for stream_id, c in changed
            )
        except sqlite3.Error as exc:
            log_event(log, "records.write_failed", logging.WARNING, error=str(exc))
            return
        self._note([(stream_id, c.frames_captured) for stream_id, c in changed])

    def _note(self, counts: list[tuple[str, int]]) -> None:
        now = time.monotonic()
        with self._lock:
            for stream_id, n in counts:
                before, _ = self._persisted.get(stream_id, (0, 0.0))
                self._persisted[stream_id] = (max(before, n), now)
