"""The capture worker against the real GStreamer RTSP camera."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streamgrid.core.crd import WorkerExit
from streamgrid.core.grid import decode_jpeg
from streamgrid.core.models import StreamState
from streamgrid.core.stores.base import ObjectStore
from streamgrid.core.stores.frames import FrameStore
from streamgrid.core.stores.s3_boto3 import S3ObjectStore
from streamgrid.core.stores.s3lite import S3LiteClient, S3LiteObjectStore
from streamgrid.core.topk import best
from testbed.camera import PASSWORD, Camera, make_camera
from testbed.cluster import install_crd
from testbed.kube import KubeCluster
from testbed.processes import ManagedProcess, free_port, wait_until
from testbed.s3 import S3Server
from testbed.worker import capture_settings, dir_store, read_clock_ms, start_worker


def test_samples_follow_the_camera_and_the_top_k_is_in_the_store(
    camera: Camera, tmp_path: Path
) -> None:
    store = dir_store(tmp_path)
    run = start_worker(capture_settings(camera.url("/gray"), capture_interval=0.2), store)
    run.wait_for(lambda p: p.frames_captured >= 20, 20, "20 samples")
    assert run.stop() == WorkerExit.STOPPED
    kept = store.list_frames("test")
    manifest = store.get_manifest("test")
    assert manifest is not None and manifest.final
    assert manifest.frames_captured == run.worker.frames_captured >= 20
    assert len(kept) == 9
    assert best(kept, 9) == manifest.kept
    for record in kept:
        assert camera.near_level(record.brightness, record.captured_at), record
        image = decode_jpeg(store.get_frame("test", record) or b"")
        assert abs(float(image.mean()) - record.brightness) < 3.0
    assert run.progress.states()[0] == StreamState.CONNECTING
    assert StreamState.ACTIVE in run.progress.states()
    assert run.progress.last().state == StreamState.STOPPED


@pytest.mark.parametrize("demuxer", ["rtp", "pyav"])
def test_samples_are_fresh_not_buffered(camera: Camera, tmp_path: Path, demuxer: str) -> None:
    """Each sample's picture was made by the camera at most a fraction of a
    second before the worker sampled it, and the lag does not grow."""
    store = dir_store(tmp_path)
    settings = capture_settings(
        camera.url("/clock"), capture_interval=0.5, top_k=100, demuxer=demuxer
    )
    run = start_worker(settings, store)
    run.wait_for(lambda p: p.frames_captured >= 12, 30, "12 samples")
    run.stop()
    lags = []
    for record in sorted(store.list_frames("test"), key=lambda r: r.seq):
        camera_ms = read_clock_ms(decode_jpeg(store.get_frame("test", record) or b""))
        lags.append(record.captured_at - camera_ms / 1000)
    assert len(lags) >= 12
    assert all(-0.05 <= lag < 0.5 for lag in lags), lags
    assert abs(sum(lags[-4:]) / 4 - sum(lags[:4]) / 4) < 0.25, lags


def test_refused_connection_reconnects_with_backoff(tmp_path: Path) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/nothing-listens"
    run = start_worker(capture_settings(url), dir_store(tmp_path))
    time.sleep(2.5)
    started = time.monotonic()
    assert run.stop() == WorkerExit.STOPPED
    assert time.monotonic() - started < 2.0
    reconnecting = [p for p in run.progress.reports if p.state == StreamState.RECONNECTING]
    assert len(reconnecting) >= 2
    assert "refused" in reconnecting[0].reason.lower()
    assert run.worker.frames_captured == 0


@pytest.mark.parametrize("demuxer", ["rtp", "pyav"])
def test_silent_camera_times_out_instead_of_hanging(
    black_hole: int, tmp_path: Path, demuxer: str
) -> None:
    url = f"rtsp://127.0.0.1:{black_hole}/silent"
    settings = capture_settings(url, open_timeout=1.0, read_timeout=1.0, demuxer=demuxer)
    run = start_worker(settings, dir_store(tmp_path))
    run.wait_for(lambda p: p.state == StreamState.RECONNECTING, 5, "a timeout")
    assert "timed out" in run.progress.last().reason.lower()
    started = time.monotonic()
    run.stop()
    assert time.monotonic() - started < 3.0


def test_refused_credentials_fail_without_leaking_them(camera: Camera, tmp_path: Path) -> None:
    url = camera.secure_url(password="Wr0ng-Passw0rd-xyz")
    run = start_worker(capture_settings(url), dir_store(tmp_path))
    run.thread.join(15)
    assert run.result["code"] == WorkerExit.FAILED
    last = run.progress.last()
    assert last.state == StreamState.FAILED
    assert "401" in last.reason
    assert "Wr0ng-Passw0rd-xyz" not in last.reason


def test_right_credentials_capture(camera: Camera, tmp_path: Path) -> None:
    store = dir_store(tmp_path)
    run = start_worker(capture_settings(camera.secure_url()), store)
    run.wait_for(lambda p: p.frames_captured >= 3, 15, "3 samples")
    run.stop()
    assert PASSWORD not in repr(run.progress.reports)
    assert store.list_frames("test")


def test_restart_rebuilds_top_k_and_count_from_the_store(camera: Camera, tmp_path: Path) -> None:
    store = dir_store(tmp_path)
    first = start_worker(capture_settings(camera.url(), top_k=4), store)
    first.wait_for(lambda p: p.frames_captured >= 10, 20, "10 samples")
    first.stop()
    before = store.list_frames("test")
    count = first.worker.frames_captured
    # A stray extra frame, as a crash between write and evict would leave.
    store.put_frame("test", type(before[0])(count + 1000, 0.5, time.time()), b"stray")

    second = start_worker(capture_settings(camera.url(), top_k=4), store)
    second.wait_for(lambda p: p.state == StreamState.ACTIVE, 15, "reconnect")
    # The count resumes past every sequence number the store has seen.
    assert second.worker.frames_captured >= count + 1001
    second.wait_for(lambda p: p.frames_captured >= count + 1010, 20, "10 more samples")
    second.stop()
    after = store.list_frames("test")
    assert len(after) == 4
    assert all(r.brightness != 0.5 for r in after)  # the stray frame was dropped
    # Every frame kept before the restart is still kept unless 4 brighter ones beat it.
    for record in before:
        beaten = sum(1 for r in after if r.rank_key < record.rank_key)
        assert record in after or beaten >= 4


def test_camera_restart_mid_stream_reconnects_and_counting_resumes(
    work_dir: Path, tmp_path: Path
) -> None:
    cam = make_camera(work_dir, name="restarting-camera").start()
    try:
        run = start_worker(capture_settings(cam.url(), read_timeout=1.5), dir_store(tmp_path))
        run.wait_for(lambda p: p.frames_captured >= 5, 20, "5 samples")
        cam.stop()
        run.wait_for(lambda p: p.state == StreamState.RECONNECTING, 10, "reconnecting")
        count = run.worker.frames_captured
        time.sleep(1.0)
        cam = make_camera(work_dir, port=cam.port, name="restarting-camera").start()
        run.wait_for(lambda p: p.state == StreamState.ACTIVE, 20, "active again")
        run.wait_for(lambda p: p.frames_captured >= count + 5, 10, "counting again")
        assert run.stop() == WorkerExit.STOPPED
    finally:
        cam.stop()


@pytest.mark.parametrize("client", ["boto3", "s3lite"])
def test_worker_writes_to_s3(camera: Camera, s3: S3Server, client: str) -> None:
    objects: ObjectStore
    if client == "boto3":
        objects = S3ObjectStore(s3.client(), f"worker-test-{client}", prefix="p")
    else:
        lite = S3LiteClient(s3.endpoint, s3.access_key, s3.secret_key)
        objects = S3LiteObjectStore(lite, f"worker-test-{client}", prefix="p")
    objects.ensure_ready()
    store = FrameStore(objects)
    run = start_worker(capture_settings(camera.url(), top_k=3), store)
    run.wait_for(lambda p: p.frames_captured >= 6, 20, "6 samples")
    run.stop()
    kept = store.list_frames("test")
    assert len(kept) == 3
    manifest = store.get_manifest("test")
    assert manifest is not None and manifest.kept == best(kept, 3)


def test_a_floor_keeps_the_count_and_sequence_numbers_from_going_back(
    camera: Camera, tmp_path: Path
) -> None:
    """After a kill -9 the manifest can be manifest_interval old and the
    listing holds only the kept frames: the runtime's last seen count (the
    floor) is what stops the count, and the sequence numbers, going back."""
    store = dir_store(tmp_path)
    first = start_worker(capture_settings(camera.url(), top_k=2), store)
    first.wait_for(lambda p: p.frames_captured >= 12, 20, "12 samples")
    first.stop()
    before = store.list_frames("test")
    # What a kill -9 leaves: the last periodic manifest, older than the count.
    manifest = store.get_manifest("test")
    assert manifest is not None
    manifest.frames_captured, manifest.final = 3, False
    store.put_manifest(manifest)
    # The runtime saw more samples than the store shows (unkept ones, after
    # the last manifest): as if 20 more had been reported before the kill.
    seen = first.progress.last().frames_captured + 20

    settings = capture_settings(camera.url(), top_k=2, frames_captured_floor=seen)
    second = start_worker(settings, store)
    second.wait_for(lambda p: p.state == StreamState.ACTIVE, 15, "reconnect")
    assert second.progress.reports[0].frames_captured == seen  # restored, before any sample
    second.wait_for(lambda p: p.frames_captured >= seen + 5, 20, "5 more samples")
    second.stop()
    counts = [p.frames_captured for p in second.progress.reports]
    assert counts == sorted(counts) and counts[0] >= seen
    after = store.list_frames("test")
    new = [r for r in after if r not in before]
    assert all(r.seq >= seen for r in new), (seen, new)  # no number used twice
    seqs = [r.seq for r in after]
    assert len(seqs) == len(set(seqs))


def test_a_restarted_capture_pod_continues_the_count_its_status_shows(
    kube: KubeCluster, camera: Camera, tmp_path: Path
) -> None:
    """The cluster worker (progress=kube) against the real API server: its
    VideoStream's status already shows 57 samples (a pod that was killed),
    the store shows none: it continues from 57, never from 0."""
    install_crd(kube)
    namespace, name = "floor-test", "restarted"
    kube.kubectl("create", "namespace", namespace, check=False)
    stream = {
        "apiVersion": "streamgrid.io/v1alpha1",
        "kind": "VideoStream",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"source": {"url": camera.url()}, "captureInterval": 0.2},
    }
    kube.kubectl("apply", "-f", "-", input_text=json.dumps(stream))
    patch = json.dumps({"status": {"framesCaptured": 57}})
    kube.kubectl(
        "-n",
        namespace,
        "patch",
        "vstream",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    )

    def status_count() -> int:
        found = json.loads(kube.kubectl("-n", namespace, "get", "vstream", name, "-o", "json"))
        return int(found.get("status", {}).get("framesCaptured", 0))

    env = dict(os.environ)
    env.update(
        STREAMGRID_STREAM_ID=name,
        STREAMGRID_SOURCE_URL=camera.url(),
        STREAMGRID_CAPTURE_INTERVAL="0.2",
        STREAMGRID_STORE_URL=str(tmp_path / "store"),
        STREAMGRID_PROGRESS="kube",
        STREAMGRID_PROGRESS_INTERVAL="0.5",
        STREAMGRID_KUBE_NAMESPACE=namespace,
        STREAMGRID_KUBE_NAME=name,
        STREAMGRID_KUBE_API_URL=kube.url,
        STREAMGRID_KUBE_TOKEN_FILE=str(kube.token_file),
        STREAMGRID_KUBE_CA_FILE=str(kube.ca_file),
    )
    worker = ManagedProcess(
        "pod-worker", [sys.executable, "-m", "streamgrid.capture"], tmp_path / "worker.log", env
    ).start()
    try:
        seen: list[int] = []

        def counting_on() -> bool:
            seen.append(status_count())
            return seen[-1] >= 57 + 5

        wait_until(counting_on, 30, "the status to count on from 57", step=0.2)
    finally:
        worker.stop()
    assert worker.process is not None and worker.process.returncode == WorkerExit.STOPPED
    assert seen == sorted(seen), seen  # the status never went back
    store = dir_store(tmp_path / "store")
    assert all(r.seq >= 57 for r in store.list_frames(name))
    manifest = store.get_manifest(name)
    assert manifest is not None and manifest.frames_captured == status_count() >= 62


# What a capture pod must never load: each costs it megabytes (issue 22).
HEAVY = ("cv2", "numpy", "pydantic", "pydantic_settings", "prometheus_client", "boto3")
_RUN_AND_LIST = """
import sys
from streamgrid.capture.__main__ import main
code = main()
heavy = [m for m in sys.argv[1:] if m in sys.modules]
print("LOADED", *heavy, "PIL" in sys.modules, flush=True)
sys.exit(code)
"""


def test_a_worker_process_loads_no_heavy_stack_sampling_or_stopping(
    camera: Camera, tmp_path: Path
) -> None:
    """A real worker, as a pod runs it (health and /metrics port, grid at
    stop): after samples, kept frames, a scrape and a graceful stop with its
    grid, none of OpenCV, NumPy, pydantic, prometheus_client or boto3 was
    ever imported."""
    store = tmp_path / "store"
    env = dict(os.environ)
    env.update(
        STREAMGRID_STREAM_ID="lean",
        STREAMGRID_SOURCE_URL=camera.url(),
        STREAMGRID_CAPTURE_INTERVAL="0.2",
        STREAMGRID_TOP_K="4",
        STREAMGRID_STORE_URL=str(store),
        STREAMGRID_GRID_AT_STOP="true",
        STREAMGRID_HEALTH_PORT=str(free_port()),
        STREAMGRID_HEALTH_HOST="127.0.0.1",
    )
    argv = [sys.executable, "-c", _RUN_AND_LIST, *HEAVY]
    worker = ManagedProcess("lean-worker", argv, tmp_path / "lean.log", env).start()
    try:
        frames = dir_store(store)
        wait_until(lambda: len(frames.list_frames("lean")) >= 4, 30, "four kept frames")
        url = f"http://127.0.0.1:{env['STREAMGRID_HEALTH_PORT']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            assert b"streamgrid_capture_samples_total" in reply.read()
    finally:
        worker.stop()
    assert worker.process is not None and worker.process.returncode == WorkerExit.STOPPED
    assert frames.list_grids("lean"), worker.log_text()[-2000:]  # the grid at stop was made
    loaded = [line for line in worker.log_text().splitlines() if line.startswith("LOADED")]
    assert loaded == ["LOADED True"], worker.log_text()[-2000:]
