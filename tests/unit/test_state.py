"""StreamRecords: the embedded runtime's SQLite records, on a real file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streamgrid.core.geometry import GridGeometry
from streamgrid.core.models import StreamState
from streamgrid.gateway.requests import StartRequest
from streamgrid.gateway.settings import GatewaySettings
from streamgrid.gateway.state import DB_NAME, StateDirBusy, StreamRecords, state_dir_for

URL = "rtsp://viewer:s3cret-pw@127.0.0.1:8554/gray"


def test_records_survive_reopening_and_keep_credentials_out_of_the_stream_row(
    tmp_path: Path,
) -> None:
    records = StreamRecords(tmp_path)
    request = StartRequest(URL, 0.5, 4, "udp", GridGeometry(2, 100, 120), tls_verify=False)
    records.insert("abc", "rtsp://viewer:***@127.0.0.1:8554/gray", request, 1_800_000_000.0)
    records.update("abc", state=StreamState.ACTIVE, frames_captured=12, kept=4, worker_pid=42)
    records.close()

    (loaded,) = StreamRecords(tmp_path).load()
    assert loaded.request == request
    assert loaded.source_url_known
    assert (loaded.state, loaded.frames_captured, loaded.kept) == (StreamState.ACTIVE, 12, 4)
    assert (loaded.started_at, loaded.worker_pid) == (1_800_000_000.0, 42)
    assert "s3cret" not in loaded.url


def test_the_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"")
    (tmp_path / DB_NAME).chmod(0o644)  # an older, wider file is narrowed
    records = StreamRecords(tmp_path)
    records.insert("abc", "rtsp://127.0.0.1/x", StartRequest(URL), 1.0)
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        path = tmp_path / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    records.close()


def test_a_count_never_goes_back_whatever_the_order_of_writes(tmp_path: Path) -> None:
    records = StreamRecords(tmp_path)
    records.insert("abc", "rtsp://127.0.0.1/x", StartRequest(URL), 1.0)
    records.update("abc", frames_captured=20)
    records.update("abc", frames_captured=17)  # a slower writer, committing late
    assert records.load()[0].frames_captured == 20


def test_deleting_a_record_deletes_its_credentials(tmp_path: Path) -> None:
    records = StreamRecords(tmp_path)
    records.insert("abc", "rtsp://127.0.0.1/x", StartRequest(URL), 1.0)
    records.delete("abc")
    assert records.load() == []
    records.close()
    assert b"s3cret-pw" not in (tmp_path / DB_NAME).read_bytes()


def test_the_state_dir_is_the_local_store_else_its_own() -> None:
    local = GatewaySettings(store_url="/srv/frames")
    assert state_dir_for(local) == Path("/srv/frames")
    s3 = GatewaySettings(store_url="s3://bucket/prefix")
    assert state_dir_for(s3) == Path("streamgrid-state")
    chosen = GatewaySettings(store_url="s3://bucket", state_dir=Path("/var/lib/sg"))
    assert state_dir_for(chosen) == Path("/var/lib/sg")


def test_one_server_per_state_directory(tmp_path: Path) -> None:
    """A second server on the same records would resume the same streams."""
    records = StreamRecords(tmp_path)
    with pytest.raises(StateDirBusy, match="another streamgrid serve is using"):
        StreamRecords(tmp_path)
    records.close()
    StreamRecords(tmp_path).close()  # released with the first
