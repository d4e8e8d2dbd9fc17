"""A real Kubernetes control plane for tests: Debian's etcd, kube-apiserver and
kube-controller-manager built from the pinned upstream modules (tools/kube)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .processes import ManagedProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "streamgrid"
BIN = Path(os.environ.get("KUBE_BIN_DIR", CACHE / "kube" / "bin"))
TOKEN = "streamgrid-admin-token"


@dataclass
class KubeCluster:
    url: str
    kubeconfig: Path
    ca_file: Path
    token_file: Path
    processes: list[ManagedProcess]
    work: Path

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def helm(self, *args: str) -> str:
        result = subprocess.run(
            [str(BIN / "helm"), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def api_client(self) -> Any:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        return client.ApiClient(configuration)

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def require_binaries() -> None:
    missing = [
        b
        for b in ("kube-apiserver", "kube-controller-manager", "kubectl", "helm")
        if not (BIN / b).exists()
    ]
    if missing:
        raise RuntimeError(f"missing {missing} in {BIN}: run tools/kube/build.sh (make test does)")
    if not shutil.which("etcd"):
        raise RuntimeError("etcd not found: apt-get install etcd-server (make test does)")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def start_cluster(work: Path, host: str = "127.0.0.1", with_node: bool = False) -> KubeCluster:
    """``with_node``: settings a real kubelet's pods need: the API server on
    ``host`` (the node's bridge address, which pods reach), every default
    controller (deployments, endpoints, the root CA ConfigMap...)."""
    require_binaries()
    work.mkdir(parents=True, exist_ok=True)
    processes: list[ManagedProcess] = []
    try:
        etcd_port, peer_port = free_port(), free_port()
        etcd = ManagedProcess(
            "etcd",
            [
                "etcd",
                "--name",
                "test",
                "--data-dir",
                str(work / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"test=http://127.0.0.1:{peer_port}",
            ],
            work / "etcd.log",
        ).start()
        processes.append(etcd)
        etcd.wait_for_http(f"http://127.0.0.1:{etcd_port}/health", 30, "etcd", step=0.05)

        _openssl("genrsa", "-out", str(work / "sa.key"), "2048")
        _openssl("rsa", "-in", str(work / "sa.key"), "-pubout", "-out", str(work / "sa.pub"))
        (work / "tokens.csv").write_text(f"{TOKEN},admin,admin,system:masters\n")
        token_file = work / "admin.token"
        token_file.write_text(TOKEN)
        port = free_port()
        certs = work / "certs"
        apiserver = ManagedProcess(
            "kube-apiserver",
            [
                str(BIN / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={host}",
                f"--advertise-address={host}",
                f"--secure-port={port}",
                f"--cert-dir={certs}",
                f"--token-auth-file={work / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={work / 'sa.pub'}",
                f"--service-account-signing-key-file={work / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                # Watches straight from etcd. With the watch cache, a watch that
                # starts from a fresh LIST's resourceVersion can get 504 "Too large
                # resource version" until the cache hears of a change of that kind;
                # Debian's etcd 3.4 does not send the progress notifications the
                # cache needs to catch up on its own.
                "--watch-cache=false",
                # The node's name resolves nowhere: reach kubelets by address.
                "--kubelet-preferred-address-types=InternalIP",
            ],
            work / "kube-apiserver.log",
        ).start()
        processes.append(apiserver)
        url = f"https://{host}:{port}"
        ca_file = certs / "apiserver.crt"
        wait_until(
            lambda: ca_file.exists() and _ready(url, ca_file),
            120,
            "kube-apiserver /readyz",
            step=0.5,
        )

        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "test",
                    "clusters": [
                        {
                            "name": "test",
                            "cluster": {"server": url, "certificate-authority": str(ca_file)},
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": TOKEN}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                }
            )
        )
        manager = ManagedProcess(
            "kube-controller-manager",
            [
                str(BIN / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                "--controllers="
                + ("*" if with_node else "garbagecollector,serviceaccount,namespace"),
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--use-service-account-credentials=false",
                f"--root-ca-file={ca_file}",
                f"--service-account-private-key-file={work / 'sa.key'}",
            ],
            work / "kube-controller-manager.log",
        ).start()
        processes.append(manager)
        return KubeCluster(url, kubeconfig, ca_file, token_file, processes, work)
    except BaseException:
        for process in reversed(processes):
            process.stop()
        raise


def _ready(url: str, ca_file: Path) -> bool:
    import ssl

    request = urllib.request.Request(url + "/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for_crd(cluster: KubeCluster, name: str) -> None:
    def established() -> bool:
        out = cluster.kubectl(
            "get",
            "crd",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Established')].status}",
            check=False,
        )
        return out.strip() == "True"

    wait_until(established, 30, f"CRD {name} established", step=0.3)
    time.sleep(0.5)  # discovery catches up
