"""The HTTP API end to end: a real `streamgrid serve`, a real RTSP camera, and
the grid decoded and checked tile by tile. Runs once per store (dir, S3)."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from testbed.api import (
    assert_grid_of_brightest,
    assert_no_kept_frame_lost,
    details,
    start,
    tile_means,
    wait_for,
)
from testbed.camera import Camera
from testbed.processes import free_port
from testbed.server import Server

from ..conftest import store_of


def test_the_grid_holds_the_brightest_samples_brightest_first(
    any_server: Server, camera: Camera
) -> None:
    with any_server.client() as client:
        stream_id = start(client, camera.url("/gray"), capture_interval=0.2)
        # 0.5 s per level, 12 levels: 7 s of samples see every level at least twice.
        wait_for(client, stream_id, lambda d: d["frames_captured"] >= 35, 30, "35 samples")
        listed = client.get("/list").json()["active_streams"][stream_id]
        assert set(listed) >= {"frames_captured", "url", "running_time"}
        assert listed["url"] == camera.url("/gray")
        assert client.post(f"/status/{stream_id}").json() == "Stream status: Active"
        response = client.post(f"/stop/{stream_id}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        grid = response.content

        manifest = store_of(any_server).get_manifest(stream_id)
        assert manifest is not None and manifest.frames_captured >= 35
        assert_grid_of_brightest(grid, manifest, camera)

        # A repeated stop returns the stored grid, byte for byte.
        again = client.post(f"/stop/{stream_id}")
        assert again.status_code == 200 and again.content == grid
        assert stream_id not in client.get("/list").json()["active_streams"]
        assert client.post(f"/status/{stream_id}").json() == "Stream status: Stopped"


def test_fewer_frames_than_k_and_custom_tiles(api_server: Server, camera: Camera) -> None:
    with api_server.client() as client:
        stream_id = start(client, camera.url(), capture_interval=1, tile_size=100)
        wait_for(client, stream_id, lambda d: d["frames_captured"] >= 2, 15, "2 samples")
        response = client.post(f"/stop/{stream_id}")
        assert response.status_code == 200
        frames = details(client, stream_id)["kept"]
        assert 2 <= frames <= 3
        (rows, cols), _ = tile_means(response.content, tile=100)
        assert (rows, cols) == (1, frames)
        # Grid geometry can be chosen again at stop time.
        tall = client.post(f"/stop/{stream_id}", params={"grid_cols": 1, "tile_size": 50})
        (rows, cols), _ = tile_means(tall.content, tile=50)
        assert (rows, cols) == (frames, 1)


def test_a_grid_too_large_to_make_is_a_400_with_the_reason(
    api_server: Server, camera: Camera
) -> None:
    """Within each parameter's bounds, a geometry can still ask for a grid no
    JPEG holds (or 1.2 GB a request): 400 with the reason, not a 500."""
    with api_server.client() as client:
        refused = client.post(
            "/start", params={"top_k": 100, "tile_size": 2000}, data={"rtsp_url": camera.url()}
        )
        assert refused.status_code == 400
        assert refused.text == "Invalid grid: 20000x20000 px for 100 frames: over 16384 px a side"
        stream_id = start(client, camera.url(), capture_interval=0.1)
        wait_for(client, stream_id, lambda d: d["kept"] >= 9, 20, "9 kept frames")
        wide = client.post(f"/stop/{stream_id}", params={"grid_cols": 9, "tile_size": 2000})
        assert (wide.status_code, wide.text) == (
            400,
            "Invalid grid: 18000x2000 px for 9 frames: over 16384 px a side",
        )
        assert client.post(f"/stop/{stream_id}").status_code == 200  # the default grid


def test_dead_camera_reports_why_and_stop_says_no_frames(api_server: Server) -> None:

    with api_server.client() as client:
        stream_id = start(client, f"rtsp://127.0.0.1:{free_port()}/gone")
        wait_for(client, stream_id, lambda d: d["state"] == "Reconnecting", 15, "reconnecting")
        status = client.post(f"/status/{stream_id}").json()
        assert status.startswith("Stream status: Reconnecting (") and "refused" in status
        response = client.post(f"/stop/{stream_id}")
        assert (response.status_code, response.text) == (400, "No frames captured")


def test_killed_worker_is_restarted_and_loses_no_kept_frame(server: Server, camera: Camera) -> None:
    store = store_of(server)
    with server.client() as client:
        stream_id = start(client, camera.url(), capture_interval=0.2, top_k=4)
        wait_for(client, stream_id, lambda d: d["frames_captured"] >= 10, 20, "10 samples")
        before = store.list_frames(stream_id)
        pid = details(client, stream_id)["worker"]["pid"]
        count = details(client, stream_id)["frames_captured"]
        os.kill(pid, signal.SIGKILL)
        wait_for(
            client,
            stream_id,
            lambda d: (
                d["worker"]["restarts"] == 1
                and d["worker"]["pid"] not in (None, pid)
                and d["frames_captured"] >= count + 5
            ),
            30,
            "a restarted worker sampling",
        )
        assert client.post(f"/stop/{stream_id}").status_code == 200
        manifest = store.get_manifest(stream_id)
        assert manifest is not None and manifest.frames_captured >= count + 5
        assert_no_kept_frame_lost(before, manifest.kept, 4)


def test_stop_all_stops_every_stream_in_parallel(api_server: Server, camera: Camera) -> None:
    with api_server.client() as client:
        ids = [start(client, camera.url(), capture_interval=0.5) for _ in range(3)]
        for stream_id in ids:
            wait_for(client, stream_id, lambda d: d["frames_captured"] >= 1, 20, "a sample")
        response = client.post("/stop")
        assert response.status_code == 200
        results = response.json()["results"]
        assert {k: results[k] for k in ids} == dict.fromkeys(ids, "Stopped")
        assert not set(ids) & set(client.get("/list").json()["active_streams"])
        with ThreadPoolExecutor(3) as pool:
            grids = list(pool.map(lambda i: client.post(f"/stop/{i}"), ids))
        assert all(g.status_code == 200 and g.content[:2] == b"\xff\xd8" for g in grids)
        assert client.post("/stop").json() == {"results": {}}


def test_list_pages_cover_every_stream_once(api_server: Server, camera: Camera) -> None:
    """?limit=&continue= (an extension): pages in id order, each stream once;
    without them the spec's answer."""
    with api_server.client() as client:
        ids = [start(client, camera.url(), capture_interval=1) for _ in range(3)]
        try:
            everything = client.get("/list").json()
            assert "continue" not in everything
            mine = set(ids)
            seen: list[str] = []
            query: dict[str, str] = {"limit": "1"}
            for _ in range(100):
                page = client.get("/list", params=query)
                assert page.status_code == 200, page.text
                body = page.json()
                assert len(body["active_streams"]) <= 1
                seen += list(body["active_streams"])
                if "continue" not in body:
                    break
                query = {"limit": "1", "continue": body["continue"]}
            assert seen == sorted(seen) and len(seen) == len(set(seen))
            assert mine <= set(seen)
            assert set(seen) == set(everything["active_streams"]) | (set(seen) - mine)
            bad = client.get("/list", params={"limit": "0"})
            assert bad.status_code == 400
            assert bad.text.startswith("Invalid request: limit")
            forged = client.get("/list", params={"limit": "1", "continue": "%%%"})
            assert forged.status_code == 400
        finally:
            for stream_id in ids:
                client.post(f"/stop/{stream_id}")


def test_credentials_never_reach_logs_list_or_status(api_server: Server, camera: Camera) -> None:
    from testbed.camera import PASSWORD

    wrong = "Not-The-Pw-42"
    with api_server.client() as client:
        good = start(client, camera.secure_url(), capture_interval=0.5)
        bad = start(client, camera.secure_url(password=wrong))
        wait_for(client, good, lambda d: d["frames_captured"] >= 2, 30, "samples")
        wait_for(client, bad, lambda d: d["state"] == "Failed", 30, "auth failure")
        worker = details(client, good).get("worker")
        if worker:  # embedded: not on the worker's command line (ps)
            with open(f"/proc/{worker['pid']}/cmdline", "rb") as f:
                assert PASSWORD.encode() not in f.read()
        seen = [
            client.get("/list").text,
            client.post(f"/status/{good}").text,
            client.post(f"/status/{bad}").text,
            client.get(f"/streams/{good}").text,
            client.get(f"/streams/{bad}").text,
        ]
        assert "401" in seen[2]
        assert f"viewer:***@127.0.0.1:{camera.secure_port}" in seen[0]
        client.post(f"/stop/{good}")
        client.post(f"/stop/{bad}")
    time.sleep(0.5)
    log = api_server.log_text()
    assert "worker.active" in log and "worker.failed" in log  # the logs are really captured
    for text in [*seen, log]:
        assert PASSWORD not in text and wrong not in text
