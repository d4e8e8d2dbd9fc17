"""The chart installed by Helm on the real node (kubenode.py): the user's path,
with SeaweedFS standing in for MinIO as the chart's external S3."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx

from streamgrid.core.settings import CommonSettings
from streamgrid.core.store import FrameStore

from .camera import Camera
from .kube import ROOT, KubeCluster
from .kubenode import KubeletNode
from .processes import wait_until
from .s3 import S3Server

CHART = ROOT / "charts" / "streamgrid"
RELEASE, NAMESPACE = "sg", "streamgrid-node"
BUCKET, PREFIX = "node", "frames"
NODE_PORT = 30080


@dataclass
class NodeCluster:
    kube: KubeCluster
    node: KubeletNode
    s3: S3Server
    camera: Camera
    work: Path

    @property
    def gateway_url(self) -> str:
        """The gateway's Service, by its NodePort on the node (kube-proxy's rules)."""
        return f"http://{self.node.network.node_ip}:{NODE_PORT}"

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.gateway_url, timeout=timeout)

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.kube.kubectl("-n", NAMESPACE, *args, check=check)

    def helm(self, *args: str) -> str:
        return self.kube.helm("-n", NAMESPACE, *args)

    def pods(self) -> list[dict[str, object]]:
        items: list[dict[str, object]] = json.loads(self.kubectl("get", "pods", "-o", "json"))[
            "items"
        ]
        return items

    def store(self) -> FrameStore:
        """The store the capture pods write to (per namespace under the prefix)."""
        return CommonSettings.model_validate(
            {
                "store_url": f"s3://{BUCKET}/{PREFIX}/{NAMESPACE}",
                "s3_endpoint_url": self.s3.endpoint,
                "s3_access_key_id": self.s3.access_key,
                "s3_secret_access_key": self.s3.secret_key,
            }
        ).open_store()

    def uninstall_if_installed(self) -> None:
        """Teardown: the release goes first, so the kubelet removes its pods."""
        if self.kube.helm("list", "-n", NAMESPACE, "-q").strip():
            self.helm("uninstall", RELEASE, "--wait", "--timeout", "60s")

    def logs(self) -> str:
        """Every container's log in the namespace, for a failing test's report."""
        out = []
        for pod in self.pods():
            name = pod["metadata"]["name"]  # type: ignore[index]
            out.append(
                f"--- {name}\n" + self.kubectl("logs", str(name), "--all-containers", check=False)
            )
        return "\n".join(out)


def values(s3: S3Server) -> dict[str, object]:
    return {
        # Built by tools/node/images.sh and imported into the node's containerd.
        "image": {"registry": "localhost", "tag": "dev", "pullPolicy": "Never"},
        "minio": {"enabled": False},
        "s3": {
            "endpoint": s3.endpoint,
            "bucket": BUCKET,
            "prefix": PREFIX,
            "accessKeyId": s3.access_key,
            "secretAccessKey": s3.secret_key,
        },
        "gateway": {"service": {"type": "NodePort", "nodePort": NODE_PORT}},
        "operator": {"progressIntervalSeconds": 1},
    }


def install(cluster: NodeCluster) -> None:
    cluster.s3.create_bucket(BUCKET)
    values_file = cluster.work / "values.json"
    values_file.write_text(json.dumps(values(cluster.s3)))
    cluster.kube.helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--values",
        str(values_file),
        "--wait",
        "--timeout",
        "180s",
    )

    def serving() -> bool:
        try:
            return httpx.get(cluster.gateway_url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(serving, 60, "the gateway through its NodePort", step=0.5)
