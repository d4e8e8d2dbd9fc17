"""Small helpers over the HTTP API for the end-to-end tests."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from streamgrid.core.grid import decode_jpeg

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
