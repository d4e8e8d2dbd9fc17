"""A store that refuses writes, for real: the embedded runtime with its
directory store, and the worker's file-size limit (RLIMIT_FSIZE) set to 0 by
prlimit while it runs, so every write of a frame fails in the kernel with
EFBIG ("File too large"), as a full disk fails with ENOSPC, on the same code
path. Unlike a read-only directory it holds for root too, and it needs no
mount. Nothing kept may be lost, nothing unstored counted as kept, and a stop
must wait until the frames are in the store."""

from __future__ import annotations

import contextlib
import json
import math
import resource
from collections.abc import Iterator
from contextlib import contextmanager

from streamgrid.core.grid import decode_jpeg
from streamgrid.core.topk import best
from testbed.api import details, start, wait_for
from testbed.camera import Camera
from testbed.cluster import ClusterRuntime
from testbed.processes import free_port, wait_until
from testbed.server import Server

from ..conftest import store_of

K = 100  # every sample enters the top K: frames pile up while the store refuses them
TILE = 32


@contextmanager
def writes_refused(pid: int) -> Iterator[None]:
    """The process may create files but not write a byte into them, until the
    block ends (the soft limit only: a user may raise it back to the hard one)."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):  # a worker stopped by a failed check
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


def test_a_store_refusing_writes_loses_no_frame_and_stop_waits_for_it(
    server: Server, camera: Camera
) -> None:
    store = store_of(server)
    with server.client() as client:
        stream_id = start(client, camera.url(), capture_interval=0.2, top_k=K, tile_size=TILE)
        wait_for(client, stream_id, lambda d: d["kept"] >= 3, 30, "3 frames stored")
        pid = details(client, stream_id)["worker"]["pid"]

        with writes_refused(pid):
            wait_for(
                client,
                stream_id,
                lambda d: d["reason"].startswith("store:") and d.get("unsaved", 0) >= 3,
                30,
                "3 frames refused by the store",
            )
            shown = details(client, stream_id)
            # Capture goes on; kept counts only what is on disk, the rest is held.
            assert shown["state"] == "Active"
            assert shown["reason"] == "store: File too large"
            assert shown["store_error"] == "File too large"
            assert shown["kept"] == len(store.list_frames(stream_id)) < shown["frames_captured"]
            assert client.post(f"/status/{stream_id}").json() == "Stream status: Active"

            # A stop now would lose the held frames: 503 with the reason, nothing stopped.
            response = client.post(f"/stop/{stream_id}")
            assert (response.status_code, response.text) == (
                503,
                "Store unavailable: File too large",
            )
            results = client.post("/stop").json()["results"]
            assert results[stream_id] == "Store unavailable: File too large"
            wait_for(
                client,
                stream_id,
                lambda d: d["frames_captured"] > shown["frames_captured"] + 2,
                10,
                "sampling to go on",
            )
            still = details(client, stream_id)
            assert still["state"] == "Active" and still["worker"]["pid"] == pid

        # The store is back: the held frames are written, kept catches up.
        wait_for(
            client,
            stream_id,
            lambda d: d["unsaved"] == 0 and d["store_error"] == "" and d["reason"] == "",
            30,
            "the held frames stored",
        )
        caught_up = details(client, stream_id)
        assert caught_up["kept"] == min(caught_up["frames_captured"], K)
        assert len(store.list_frames(stream_id)) >= caught_up["kept"]  # more stored since

        response = client.post(f"/stop/{stream_id}")
        assert response.status_code == 200, response.text

    captured = details_after_stop(server, stream_id)
    kept = store.list_frames(stream_id)
    assert len(kept) == min(captured, K)
    if captured <= K:  # every sample entered the top K: every one is on disk
        assert {r.seq for r in kept} == set(range(captured))
    manifest = store.get_manifest(stream_id)
    assert manifest is not None and manifest.final
    assert manifest.kept == best(kept, K)
    # The grid shows them all: ceil(sqrt(K)) columns of TILE px, a row per 10.
    cols = math.ceil(math.sqrt(K))
    image = decode_jpeg(response.content)
    assert image.shape[:2] == (math.ceil(len(kept) / cols) * TILE, cols * TILE)


def details_after_stop(server: Server, stream_id: str) -> int:
    with server.client() as client:
        shown = details(client, stream_id)
    assert shown["state"] == "Stopped"
    count: int = shown["frames_captured"]
    return count


def test_the_cluster_gateway_holds_a_stop_while_the_pod_reports_a_store_error(
    cluster: ClusterRuntime,
) -> None:
    """The pod's report travels as status.storeError (kept by the CRD's schema,
    which prunes undeclared fields); here it is written as the pod writes it,
    a PATCH of the status subresource, on a stream whose pod runs."""
    with cluster.gateway.client() as client:
        stream_id = start(client, f"rtsp://127.0.0.1:{free_port()}/gone")

        def capture_state() -> object:
            status = cluster.stream(stream_id).get("status")
            return status.get("captureState") if isinstance(status, dict) else None

        wait_until(lambda: capture_state() == "Reconnecting", 60, "the pod reporting", step=0.3)

        def report(store_error: str) -> None:
            cluster.kubectl(
                "patch",
                "vstream",
                stream_id,
                "--subresource=status",
                "--type=merge",
                "-p",
                json.dumps({"status": {"storeError": store_error}}),
            )

        report("No space left on device")
        wait_for(
            client,
            stream_id,
            lambda d: d["store_error"] == "No space left on device",
            30,
            "the gateway to see the store error",
        )
        response = client.post(f"/stop/{stream_id}")
        assert (response.status_code, response.text) == (
            503,
            "Store unavailable: No space left on device",
        )
        results = client.post("/stop").json()["results"]
        assert results[stream_id] == "Store unavailable: No space left on device"
        spec = cluster.stream(stream_id)["spec"]
        assert isinstance(spec, dict) and spec["state"] == "Running"  # not stopped

        report("")
        wait_for(client, stream_id, lambda d: d["store_error"] == "", 30, "the error to clear")
        response = client.post(f"/stop/{stream_id}")
        assert (response.status_code, response.text) == (400, "No frames captured")
