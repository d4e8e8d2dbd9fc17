"""The chart installed by Helm on the real node (kubenode.py): the user's path,
the chart's own MinIO included (built from its Go module, tools/minio)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx

from streamgrid.core.settings import CommonSettings
from streamgrid.core.stores.frames import FrameStore

from .camera import Camera
from .kube import ROOT, KubeCluster
from .kubenode import KubeletNode
from .processes import wait_until

CHART = ROOT / "charts" / "streamgrid"
RELEASE, NAMESPACE = "sg", "streamgrid-node"
BUCKET, PREFIX = "node", "frames"
NODE_PORT = 30080
# The tests call the API as this service account, bound to the chart's edit role.
API_USER = "api-user"
# The chart makes its MinIO's root user from these (MinIO wants 8+ characters).
ACCESS_KEY, SECRET_KEY = "streamgrid-node", "minio-test-secret-9c1f"


@dataclass
class NodeCluster:
    kube: KubeCluster
    node: KubeletNode
    camera: Camera
    work: Path
    api_token: str | None = None

    @property
    def s3_endpoint(self) -> str:
        """The chart's MinIO, by its Service's ClusterIP (kube-proxy's rules
        serve the host too)."""
        service = json.loads(
            self.kubectl("get", "service", f"{RELEASE}-streamgrid-minio", "-o", "json")
        )
        return f"http://{service['spec']['clusterIP']}:9000"

    @property
    def gateway_url(self) -> str:
        """The gateway's Service, by its NodePort on the node (kube-proxy's rules)."""
        return f"http://{self.node.network.node_ip}:{NODE_PORT}"

    def token(self, account: str = API_USER) -> str:
        """A token for a service account of the namespace, as a user gets one."""
        return self.kubectl("create", "token", account, "--duration=2h").strip()

    def client(self, timeout: float = 60.0, token: str | None = None) -> httpx.Client:
        """A client of the gateway that calls as API_USER (the chart turns
        authentication on); ``token`` calls as someone else."""
        if token is None:
            if self.api_token is None:
                self.api_token = self.token()
            token = self.api_token
        return httpx.Client(
            base_url=self.gateway_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )

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
                "s3_endpoint_url": self.s3_endpoint,
                "s3_access_key_id": ACCESS_KEY,
                "s3_secret_access_key": SECRET_KEY,
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


def values() -> dict[str, object]:
    return {
        # Built by tools/node/images.sh and imported into the node's containerd.
        "image": {"registry": "localhost", "tag": "dev", "pullPolicy": "Never"},
        "minio": {
            "enabled": True,
            "image": "localhost/streamgrid-minio:dev",
            "rootUser": ACCESS_KEY,
            "rootPassword": SECRET_KEY,
        },
        "s3": {"bucket": BUCKET, "prefix": PREFIX},
        "gateway": {"service": {"type": "NodePort", "nodePort": NODE_PORT}},
        "operator": {"progressIntervalSeconds": 1},
    }


def install(cluster: NodeCluster) -> None:
    values_file = cluster.work / "values.json"
    values_file.write_text(json.dumps(values()))

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
    cluster.kubectl("create", "serviceaccount", API_USER)
    cluster.kubectl(
        "create",
        "rolebinding",
        API_USER,
        f"--clusterrole={RELEASE}-streamgrid-edit",
        f"--serviceaccount={NAMESPACE}:{API_USER}",
    )
