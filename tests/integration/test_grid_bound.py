"""Stored grids per stream are bounded: every geometry asked for at stop is
stored, and without a bound a client looping over geometries fills the store.
Run against both stores: a local directory and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from streamgrid.core.geometry import GridGeometry
from streamgrid.core.grid import encode_jpeg
from streamgrid.core.grid_store import MAX_GRIDS_PER_STREAM, grid_for_stream
from streamgrid.core.models import FrameRecord
from streamgrid.core.stores.directory import DirectoryObjectStore
from streamgrid.core.stores.frames import FrameStore
from streamgrid.core.stores.s3_boto3 import S3ObjectStore
from testbed.api import start, wait_for
from testbed.camera import Camera
from testbed.s3 import S3Server
from testbed.server import Server

STREAM = "bounded"
TOP_K = 4


@pytest.fixture(params=["dir", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FrameStore:
    if request.param == "dir":
        return FrameStore(DirectoryObjectStore(tmp_path / "store"))
    s3: S3Server = request.getfixturevalue("s3")
    objects = S3ObjectStore(s3.client(), f"g-{uuid.uuid4().hex[:12]}", prefix="grids")
    objects.ensure_ready()
    return FrameStore(objects)


def put_frames(store: FrameStore) -> None:
    for seq, level in enumerate((40, 200, 120, 80, 160)):
        frame = np.full((48, 64, 3), level, dtype=np.uint8)
        store.put_frame(
            STREAM, FrameRecord(seq, float(level), 1795000000.0 + seq), encode_jpeg(frame)
        )


def test_many_geometries_leave_at_most_the_bound_and_the_default_grid_intact(
    store: FrameStore,
) -> None:
    put_frames(store)
    own = GridGeometry(cols=2, tile_width=40, tile_height=30)
    first = grid_for_stream(store, STREAM, TOP_K, own, own)
    geometries = [
        GridGeometry(cols=1 + i % 3, tile_width=16 + i, tile_height=20) for i in range(20)
    ]
    for geometry in geometries:
        grid_for_stream(store, STREAM, TOP_K, geometry, own)
        assert len(store.list_grids(STREAM)) <= MAX_GRIDS_PER_STREAM
    stored = store.list_grids(STREAM)
    assert len(stored) == MAX_GRIDS_PER_STREAM
    # The stream's own grid was kept through all of it, and is returned as stored.
    assert own.name(TOP_K, TOP_K) in stored
    assert grid_for_stream(store, STREAM, TOP_K, own, own) == first
    # The latest geometry asked for is stored too; an evicted one is made again.
    assert geometries[-1].name(TOP_K, TOP_K) in stored
    again = grid_for_stream(store, STREAM, TOP_K, geometries[0], own)
    assert again[:2] == b"\xff\xd8" and len(store.list_grids(STREAM)) == MAX_GRIDS_PER_STREAM


def test_list_and_delete_grids(store: FrameStore) -> None:
    store.put_grid("s1", "grid_a.jpg", b"a")
    store.put_grid("s1", "grid_b.jpg", b"b")
    store.put_grid("s2", "grid_c.jpg", b"c")
    assert sorted(store.list_grids("s1")) == ["grid_a.jpg", "grid_b.jpg"]
    store.delete_grid("s1", "grid_a.jpg")
    assert store.list_grids("s1") == ["grid_b.jpg"]
    assert store.get_grid("s1", "grid_a.jpg") is None
    assert store.list_grids("s2") == ["grid_c.jpg"]
    assert store.list_grids("nothing") == []


def test_through_the_api_the_grids_on_disk_stay_bounded(server: Server, camera: Camera) -> None:
    """The same through `streamgrid serve` (directory store): a stopped stream
    asked for many geometries keeps at most the bound on disk, and its own
    grid comes back byte for byte."""
    with server.client() as client:
        stream_id = start(client, camera.url(), capture_interval=0.1, top_k=4, tile_size=64)
        wait_for(client, stream_id, lambda d: d["kept"] >= 4, 20, "4 kept frames")
        first = client.post(f"/stop/{stream_id}")
        assert first.status_code == 200, first.text
        grids_dir = Path(server.store_url) / stream_id / "grids"
        for i in range(3 * MAX_GRIDS_PER_STREAM):
            other = client.post(
                f"/stop/{stream_id}", params={"grid_cols": 1 + i % 4, "tile_size": 16 + i}
            )
            assert other.status_code == 200, other.text
            assert len(list(grids_dir.iterdir())) <= MAX_GRIDS_PER_STREAM
        again = client.post(f"/stop/{stream_id}")
        assert again.status_code == 200 and again.content == first.content
