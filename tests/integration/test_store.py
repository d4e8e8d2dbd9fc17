"""The FrameStore contract, run against both implementations: a local
directory and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from streamgrid.core.models import FrameRecord, Manifest, StreamState
from streamgrid.core.store import (
    DirectoryObjectStore,
    FrameStore,
    S3ObjectStore,
    StoreError,
    frame_key,
    parse_frame_key,
)

from ..support.s3 import S3Server


@pytest.fixture(params=["dir", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FrameStore:
    if request.param == "dir":
        return FrameStore(DirectoryObjectStore(tmp_path / "store"))
    s3: S3Server = request.getfixturevalue("s3")
    objects = S3ObjectStore(s3.client(), f"t-{uuid.uuid4().hex[:12]}", prefix="some/prefix")
    objects.ensure_ready()
    return FrameStore(objects)


def test_frame_key_round_trip() -> None:
    record = FrameRecord(42, 187.125, 1795000000.123)
    name = frame_key("abc", record).rsplit("/", 1)[-1]
    assert parse_frame_key(name) == record
    assert parse_frame_key("garbage.jpg") is None


def test_frames_round_trip_and_listing_rebuilds_records(store: FrameStore) -> None:
    records = [FrameRecord(i, 10.5 * i, 1795000000.0 + i) for i in range(5)]
    for r in records:
        store.put_frame("s1", r, f"jpeg-{r.seq}".encode())
    store.put_frame("s2", FrameRecord(0, 1.0, 1.0), b"other stream")
    assert sorted(store.list_frames("s1"), key=lambda r: r.seq) == records
    assert store.get_frame("s1", records[3]) == b"jpeg-3"
    store.delete_frame("s1", records[3])
    assert store.get_frame("s1", records[3]) is None
    assert len(store.list_frames("s1")) == 4
    assert len(store.list_frames("s2")) == 1


def test_manifest_and_grid(store: FrameStore) -> None:
    assert store.get_manifest("s1") is None
    manifest = Manifest("s1", 12, [FrameRecord(3, 99.0, 5.0)], StreamState.STOPPED, 6.0, True)
    store.put_manifest(manifest)
    assert store.get_manifest("s1") == manifest
    store.put_grid("s1", "grid_a.jpg", b"grid")
    assert store.get_grid("s1", "grid_a.jpg") == b"grid"
    assert store.get_grid("s1", "grid_b.jpg") is None


def test_delete_stream_removes_only_that_stream(store: FrameStore) -> None:
    store.put_frame("s1", FrameRecord(0, 1.0, 1.0), b"a")
    store.put_manifest(Manifest("s1", 1, [], StreamState.STOPPED, 1.0))
    store.put_frame("s10", FrameRecord(0, 1.0, 1.0), b"b")
    store.delete_stream("s1")
    assert store.list_frames("s1") == []
    assert store.get_manifest("s1") is None
    assert len(store.list_frames("s10")) == 1


def test_directory_store_refuses_keys_outside_its_root(tmp_path: Path) -> None:
    objects = DirectoryObjectStore(tmp_path / "root")
    with pytest.raises(StoreError):
        objects.put("../escape", b"x", "text/plain")


def test_s3_rejects_a_wrong_secret(s3: S3Server) -> None:
    """Auth is real: the server refuses a bad signature."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match=r"SignatureDoesNotMatch|AccessDenied|InvalidAccessKey"):
        s3.client(secret_key="wrong-secret").list_buckets()
