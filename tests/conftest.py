"""Session fixtures: real services, started once, stopped by PID.

If a service cannot start, the fixture raises: the tests that need it error
out loudly instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamgrid.core.settings import CommonSettings
from streamgrid.core.stores.frames import FrameStore
from testbed.camera import Camera, make_camera
from testbed.cluster import ClusterRuntime, start_cluster_runtime
from testbed.kube import KubeCluster, start_cluster
from testbed.kubenode import (
    CONTAINERD_ROOT,
    BringUp,
    NodeNetwork,
    ProcessRecord,
    build_images,
    start_node,
)
from testbed.release import NodeCluster, install
from testbed.s3 import S3Server, start_s3
from testbed.server import Server, start_server

BRING_UP = BringUp()  # the real node's bring-up times, printed after the run


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs and data of the session's services (kept for CI's artifacts)."""
    root = os.environ.get("STREAMGRID_TEST_WORK")
    if root:
        path = Path(root)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def camera(work_dir: Path) -> Iterator[Camera]:
    cam = make_camera(work_dir).start()
    yield cam
    cam.stop()


@pytest.fixture(scope="session")
def s3(work_dir: Path) -> Iterator[S3Server]:
    server = start_s3(work_dir / "s3")
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def server(work_dir: Path) -> Iterator[Server]:
    """The embedded runtime with its default store: a local directory."""
    srv = start_server(work_dir, "server-dir")
    yield srv
    srv.process.stop()


@pytest.fixture(scope="session")
def server_s3(work_dir: Path, s3: S3Server) -> Iterator[Server]:
    """The embedded runtime writing to the real S3 server."""
    s3.create_bucket("embedded")
    # Its stream records beside the other services' data (not ./streamgrid-state).
    records = {"STREAMGRID_STATE_DIR": str(work_dir / "server-s3-state")}
    store = s3.env("embedded", "frames")
    srv = start_server(work_dir, "server-s3", store_env=store, extra_env=records)
    yield srv
    srv.process.stop()


@pytest.fixture(scope="session")
def kube(work_dir: Path) -> Iterator[KubeCluster]:
    """etcd + kube-apiserver + kube-controller-manager, real and local."""
    cluster = start_cluster(work_dir / "kube")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def cluster(kube: KubeCluster, s3: S3Server, work_dir: Path) -> Iterator[ClusterRuntime]:
    """The cluster runtime: CRD, operator, gateway (kube backend), node stand-in."""
    runtime = start_cluster_runtime(kube, s3, work_dir / "cluster")
    yield runtime
    runtime.gateway.process.stop()
    runtime.node.stop()
    runtime.operator.stop()


@pytest.fixture(scope="session")
def node_cluster(work_dir: Path) -> Iterator[NodeCluster]:
    """A real node (containerd, runc, CNI bridge, kubelet, kube-proxy,
    kube-scheduler, CoreDNS) on its own control plane, the chart installed by
    Helm with its own MinIO, the camera on the node's address. Torn down in
    reverse, by PID."""

    work = work_dir / "node-cluster"
    work.mkdir(parents=True, exist_ok=True)
    with BRING_UP.step("images (tools/node/images.sh)"):
        build_images(work / "images.log")
    BRING_UP.details += [
        "  " + line
        for line in (work / "images.log").read_text().splitlines()
        if "node-images:" in line
    ]
    record = ProcessRecord(CONTAINERD_ROOT.parent / "processes")
    record.stop_recorded()  # what a killed run left running
    with contextlib.ExitStack() as teardown:
        teardown.callback(record.clear)
        network = NodeNetwork()
        with BRING_UP.step("bridge, service route, forward guard"):
            network.up()
        teardown.callback(network.down)
        with BRING_UP.step("etcd, kube-apiserver, kube-controller-manager"):
            kube = start_cluster(work / "kube", host=network.node_ip, with_node=True)
        record.add(*kube.processes)
        teardown.callback(kube.stop)
        with BRING_UP.step("camera on the node address"):
            camera = make_camera(work, name="node-camera", host=network.node_ip)
            teardown.callback(camera.stop)
            camera.start()
            record.add(camera.process)

        node = start_node(kube, network, work / "node", BRING_UP, record)

        teardown.callback(node.stop)
        cluster = NodeCluster(kube, node, camera, work)

        teardown.callback(cluster.uninstall_if_installed)
        with BRING_UP.step("helm install --wait, gateway answering"):
            install(cluster)
        yield cluster


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if BRING_UP.steps:
        terminalreporter.section("real node bring-up")
        for line in BRING_UP.lines():
            terminalreporter.write_line(line)


RUNTIMES = {"dir": "server", "s3": "server_s3", "kube": "cluster"}


@pytest.fixture(params=list(RUNTIMES))
def any_server(request: pytest.FixtureRequest) -> Server:
    """Each API test that takes this runs on the embedded runtime (directory
    store, S3 store) and on the cluster runtime."""
    found = request.getfixturevalue(RUNTIMES[request.param])
    return found.gateway if isinstance(found, ClusterRuntime) else found


@pytest.fixture(params=["local", "kube"])
def api_server(request: pytest.FixtureRequest) -> Server:
    """The embedded runtime (directory store) and the cluster runtime."""
    if request.param == "local":
        srv: Server = request.getfixturevalue("server")
        return srv
    runtime: ClusterRuntime = request.getfixturevalue("cluster")
    return runtime.gateway


def store_of(server: Server) -> FrameStore:
    """The store a server's workers write to, opened the way they open it."""
    keys = (
        "STREAMGRID_S3_ENDPOINT_URL",
        "STREAMGRID_S3_ACCESS_KEY_ID",
        "STREAMGRID_S3_SECRET_ACCESS_KEY",
    )
    values = {k.removeprefix("STREAMGRID_").lower(): server.env[k] for k in keys if k in server.env}
    values["store_url"] = server.store_url
    return CommonSettings.model_validate(values).open_store()
