"""The cluster runtime for tests: the real operator and the real gateway
(kube backend) against the real API server, with a node stand-in running
the capture pods (see node.py for what that is and is not)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .kube import ROOT, KubeCluster, wait_for_crd
from .node import NodeStandIn
from .processes import ManagedProcess, free_port
from .s3 import S3Server
from .server import Server, start_server

CRD = ROOT / "charts" / "streamgrid" / "crds" / "videostreams.streamgrid.io.yaml"
NAMESPACE = "streamgrid-test"
BUCKET, PREFIX = "cluster", "frames"


@dataclass
class ClusterRuntime:
    kube: KubeCluster
    namespace: str
    operator: ManagedProcess
    operator_env: dict[str, str]
    node: NodeStandIn
    gateway: Server
    work: Path

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.kube.kubectl("-n", self.namespace, *args, check=check)

    def stream(self, name: str) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.kubectl("get", "vstream", name, "-o", "json"))
        return data

    def restart_operator(self) -> None:
        self.operator.stop()
        self.operator = start_operator(self.operator_env, self.work, self.operator.name + "-again")


def install_crd(kube: KubeCluster) -> None:
    kube.kubectl("apply", "--server-side", "-f", str(CRD))
    wait_for_crd(kube, "videostreams.streamgrid.io")


def start_operator(env: dict[str, str], work: Path, name: str = "operator") -> ManagedProcess:
    process = ManagedProcess(
        name, [sys.executable, "-m", "streamgrid.operator"], work / f"{name}.log", env=env
    ).start()
    url = f"http://127.0.0.1:{env['STREAMGRID_LIVENESS_PORT']}/healthz"
    process.wait_for_http(url, 60, "the operator's liveness endpoint")
    return process


def start_cluster_runtime(kube: KubeCluster, s3: S3Server, work: Path) -> ClusterRuntime:
    work.mkdir(parents=True, exist_ok=True)
    install_crd(kube)
    kube.kubectl("create", "namespace", NAMESPACE)
    kube.kubectl("-n", NAMESPACE, "create", "serviceaccount", "streamgrid-capture")
    kube.kubectl(
        "-n",
        NAMESPACE,
        "create",
        "secret",
        "generic",
        "streamgrid-s3",
        f"--from-literal=accessKeyId={s3.access_key}",
        f"--from-literal=secretAccessKey={s3.secret_key}",
    )
    s3.create_bucket(BUCKET)
    env = dict(os.environ)
    env.update(kube.env())
    env.update(s3.env(BUCKET, PREFIX))  # the operator deletes a deleted stream's data
    env.update(
        {
            # Every namespace, as the chart runs it; the S3 Secret is copied from here.
            "STREAMGRID_OPERATOR_NAMESPACE": NAMESPACE,
            "STREAMGRID_STORE_URL": f"s3://{BUCKET}/{PREFIX}",
            "STREAMGRID_S3_ENDPOINT_URL": s3.endpoint,
            "STREAMGRID_S3_SECRET_NAME": "streamgrid-s3",
            "STREAMGRID_LIVENESS_HOST": "127.0.0.1",
            "STREAMGRID_LIVENESS_PORT": str(free_port()),
            "STREAMGRID_RECONCILE_INTERVAL_SECONDS": "2",
            "STREAMGRID_TERMINATION_GRACE_SECONDS": "15",
            "STREAMGRID_PROGRESS_INTERVAL_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    operator = start_operator(env, work)
    node_logs = work / "node"
    node_logs.mkdir(exist_ok=True)
    node = NodeStandIn(kube, NAMESPACE, node_logs).start()
    gateway = start_server(
        work,
        "server-kube",
        store_env=s3.env(BUCKET, PREFIX),
        extra_env={
            **kube.env(),
            "STREAMGRID_BACKEND": "kube",
            "STREAMGRID_KUBE_NAMESPACE": NAMESPACE,
            "STREAMGRID_KUBE_STOP_TIMEOUT_SECONDS": "40",
        },
    )
    gateway.store_url = f"s3://{BUCKET}/{PREFIX}/{NAMESPACE}"  # pods write per namespace
    gateway.extra_logs = [operator.log_path, node_logs]
    return ClusterRuntime(kube, NAMESPACE, operator, env, node, gateway, work)
