"""Small helpers over the HTTP API for the end-to-end tests."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import numpy as np

from streamgrid.core.grid import decode_jpeg
from streamgrid.core.models import FrameRecord, Manifest
from streamgrid.core.topk import best

from .camera import Camera
from .processes import wait_until


def start(client: httpx.Client, url: str, **params: Any) -> str:
    response = client.post("/start", data={"rtsp_url": url}, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "Video stream started"
    stream_id: str = body["stream_id"]
    return stream_id


def details(client: httpx.Client, stream_id: str) -> dict[str, Any]:
    response = client.get(f"/streams/{stream_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def wait_for(client: httpx.Client, stream_id: str, check: Any, timeout: float, what: str) -> None:
    wait_until(lambda: bool(check(details(client, stream_id))), timeout, what, step=0.1)


def tile_means(jpeg: bytes, tile: int = 300) -> tuple[tuple[int, int], list[float]]:
    """(rows, cols) of the grid and the mean of each tile's centre, row-major."""
    image = decode_jpeg(jpeg)
    rows, cols = image.shape[0] // tile, image.shape[1] // tile
    means = []
    for r in range(rows):
        for c in range(cols):
            cell = image[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
            centre = cell[tile // 3 : 2 * tile // 3, tile // 3 : 2 * tile // 3]
            means.append(float(np.mean(centre)))
    return (rows, cols), means


def assert_grid_of_brightest(grid: bytes, manifest: Manifest, camera: Camera, k: int = 9) -> None:
    """The 3x3 grid shows the K brightest samples, brightest first, each the
    level the camera showed when it was sampled, the top levels without a gap."""
    shape, means = tile_means(grid)
    assert shape == (3, 3)
    assert manifest.final
    kept = manifest.kept
    assert kept == best(kept, k) and len(kept) == k
    # Tiles are the kept frames, brightest first, row by row.
    for mean, record in zip(means, kept, strict=True):
        assert abs(mean - record.brightness) < 3.0, (means, kept)
    assert all(a >= b - 1.0 for a, b in itertools.pairwise(means)), means
    for record in kept:
        assert camera.near_level(record.brightness, record.captured_at), record
    shown = sorted({min(camera.levels, key=lambda v: abs(v - r.brightness)) for r in kept})
    assert shown == sorted(camera.levels)[-len(shown) :]
    assert abs(max(means) - max(camera.levels)) <= 3


def assert_no_kept_frame_lost(before: list[FrameRecord], kept: list[FrameRecord], k: int) -> None:
    """Every frame kept before a crash is still kept, unless K brighter ones beat it."""
    for record in before:
        beaten = sum(1 for r in kept if r.rank_key < record.rank_key)
        assert record in kept or beaten >= k, (record, kept)
    seqs = [r.seq for r in kept]
    assert len(seqs) == len(set(seqs))
