"""API latencies of the embedded runtime, in-process (no network in the way):
`/list` with many registered streams, and `/stop/<id>` once the worker has
exited (9 kept 1080p frames read, tiled into the 900x900 grid, encoded)."""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

with warnings.catch_warnings():  # starlette's notice about httpx, not ours to act on
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from streamgrid.core.grid import encode_jpeg
from streamgrid.core.models import FrameRecord, StreamState
from streamgrid.core.urls import mask_url
from streamgrid.gateway.app import create_app
from streamgrid.gateway.local import LocalBackend, LocalStream
from streamgrid.gateway.requests import StartRequest
from streamgrid.gateway.settings import GatewaySettings

LIST_TARGET_MS, STOP_TARGET_MS = 50.0, 300.0


def camera_like_frame(seed: int) -> np.ndarray:
    """1080p with gradients, shapes and sensor noise: JPEG-sized like a real frame
    (pure noise would be several times larger and slower to decode)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:1080, 0:1920]
    base = (x / 1920 * 160 + y / 1080 * 60).astype(np.uint8)
    image = np.dstack([base, np.roll(base, 200, axis=1), base[::-1]]).copy()
    for _ in range(40):
        x0, y0 = int(rng.integers(0, 1800)), int(rng.integers(0, 1000))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(
            image,
            (x0, y0),
            (x0 + int(rng.integers(20, 300)), y0 + int(rng.integers(20, 200))),
            colour,
            -1,
        )
    noise = rng.integers(-6, 7, image.shape, dtype=np.int16)
    framed: np.ndarray = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return framed


def _timed(call: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        call()  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run_api_bench(short: bool = False) -> list[str]:
    streams = 200 if short else 1000
    with tempfile.TemporaryDirectory(prefix="streamgrid-api-bench-") as tmp:
        settings = GatewaySettings(store_url=str(Path(tmp) / "store"))
        store = settings.open_store()
        backend = LocalBackend(settings, store)
        for i in range(streams):  # synthetic records: no worker processes
            url = f"rtsp://user:pw{i}@10.0.{i // 250}.{i % 250}:554/stream"
            stream = LocalStream(f"{i:016x}", StartRequest(url), mask_url(url))
            stream.state, stream.frames_captured = StreamState.ACTIVE, i
            backend._streams[stream.stream_id] = stream

        target = f"{0:016x}"
        for seq in range(9):
            store.put_frame(
                target,
                FrameRecord(seq, 100.0 + seq, 1.0 + seq),
                encode_jpeg(camera_like_frame(seq)),
            )

        with TestClient(create_app(lambda: backend), base_url="http://127.0.0.1") as client:
            list_ms = _timed(lambda: client.get("/list").raise_for_status(), 10 if short else 30)
            response = None

            def stop() -> None:
                nonlocal response
                for key in list(store.objects.list(f"{target}/grids/")):
                    store.objects.delete(key)  # no cached grid: compose it every time
                backend._streams[target].state = StreamState.ACTIVE
                response = client.post(f"/stop/{target}")
                response.raise_for_status()

            stop_ms = _timed(stop, 3 if short else 10)
    return [
        f"- `GET /list` with {streams} streams: {list_ms:.1f} ms median "
        f"({list_ms / LIST_TARGET_MS:.2f}x the {LIST_TARGET_MS:.0f} ms target).",
        f"- `POST /stop/<id>` after the worker's exit, 9 kept 1080p frames to a 900x900 grid: "
        f"{stop_ms:.1f} ms median ({stop_ms / STOP_TARGET_MS:.2f}x the "
        f"{STOP_TARGET_MS:.0f} ms target).",
    ]
