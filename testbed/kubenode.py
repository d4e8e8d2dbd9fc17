"""A real node for the test cluster: containerd and runc from Debian, CNI's
bridge plugin, kubelet, kube-proxy and kube-scheduler built from the same
pinned upstream modules as kube-apiserver (tools/kube), and CoreDNS from its
own (tools/coredns) as the cluster DNS.


Everything stays inside this machine. The run creates a bridge (``sgbr0``,
10.244.0.1/24) that is the node's address and the pods' gateway; host
services the pods use (API server, S3, camera) listen on that address. The
service range is routed onto the bridge and a FORWARD guard drops anything a
pod sends beyond the pod network, so no packet leaves for an outside
address. ``NodeNetwork.down`` undoes all of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .kube import BIN, CACHE, ROOT, KubeCluster
from .processes import ManagedProcess, free_port, wait_until

NODE_NAME = "streamgrid-node"
CLUSTER_DOMAIN = "cluster.local"

IMAGES = CACHE / "node" / "images"
IMAGE_NAMES = ("pause", "gateway", "operator", "capture", "minio")
PAUSE_IMAGE = "localhost/streamgrid-pause:dev"
CONTAINERD_ROOT = CACHE / "node" / "containerd"
# Fixed, and short: unix socket paths are limited to 108 bytes, and a fixed
# state directory lets a new containerd find the containers of a killed run.
RUN_DIR = Path("/run/streamgrid-node")
GUARD = "STREAMGRID-NODE-GUARD"


@dataclass
class BringUp:
    """Wall time of each bring-up step, printed at the end of the test run."""

    steps: list[tuple[str, float]] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.steps.append((name, time.monotonic() - started))

    def lines(self) -> list[str]:
        total = sum(seconds for _, seconds in self.steps)
        rows = [f"{name:<50} {seconds:7.1f} s" for name, seconds in self.steps]
        return [*rows, f"{'total':<50} {total:7.1f} s", *self.details]


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


@dataclass
class NodeNetwork:
    bridge: str = "sgbr0"
    node_ip: str = "10.244.0.1"
    pod_cidr: str = "10.244.0.0/24"
    service_cidr: str = "10.96.0.0/24"
    _ip_forward: str | None = None  # what it was before up(), restored by down()

    def up(self) -> NodeNetwork:
        if os.geteuid() != 0:
            raise RuntimeError("the test node needs root (bridge, iptables, containers)")
        self.down()  # what a killed run left behind
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.node_ip}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        # Service IPs without endpoints go nowhere but the bridge.
        _run("ip", "route", "add", self.service_cidr, "dev", self.bridge, "src", self.node_ip)
        _run("iptables", "-N", GUARD)
        _run("iptables", "-A", GUARD, "-s", self.pod_cidr, "-d", self.pod_cidr, "-j", "RETURN")
        _run("iptables", "-A", GUARD, "-s", self.pod_cidr, "-j", "DROP")
        _run("iptables", "-I", "FORWARD", "1", "-j", GUARD)
        forward = Path("/proc/sys/net/ipv4/ip_forward")
        self._ip_forward = forward.read_text().strip()
        forward.write_text("1")  # kubelet and kube-proxy need it
        return self

    def down(self) -> None:
        if self._ip_forward is not None:
            Path("/proc/sys/net/ipv4/ip_forward").write_text(self._ip_forward)
            self._ip_forward = None

        _run("ip", "route", "del", self.service_cidr, check=False)
        _run("ip", "link", "del", self.bridge, check=False)
        _sweep_chains()


def _sweep_chains() -> None:
    """Our guard and every KUBE-* chain (kube-proxy's and kubelet's, which
    kubelet never removes), in each table, IPv4 and IPv6. The test machine
    runs no other Kubernetes, so these are all the run's own."""
    for command in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listing = _run(command, "-t", table, "-S", check=False).stdout.splitlines()
            ours = [
                line.split()[1]
                for line in listing
                if line.startswith("-N ") and line.split()[1].startswith(("KUBE-", GUARD))
            ]
            for line in listing:  # jumps into our chains from anywhere
                rule = shlex.split(line)
                if rule[0] == "-A" and "-j" in rule and rule[rule.index("-j") + 1] in ours:
                    _run(command, "-t", table, "-D", *rule[1:], check=False)
            for chain in ours:
                _run(command, "-t", table, "-F", chain, check=False)
            for chain in ours:
                _run(command, "-t", table, "-X", chain, check=False)


@dataclass
class KubeletNode:
    kube: KubeCluster
    network: NodeNetwork
    socket: Path
    work: Path
    processes: list[ManagedProcess]

    def ctr(self, *args: str, check: bool = True) -> str:
        return _run("ctr", "--address", str(self.socket), "-n", "k8s.io", *args, check=check).stdout

    def running_containers(self) -> list[str]:
        return self.ctr("tasks", "ls", "-q", check=False).split()

    def _running(self, name: str) -> ManagedProcess | None:
        return next((p for p in self.processes if p.name == name and p.alive()), None)

    def stop(self) -> None:
        """Also after a failed start: whatever of the node is running."""
        kubelet = self._running("kubelet")
        if kubelet is not None:
            kubelet.stop()
        # Containers outlive containerd (their shims are their own sessions):
        # kill what is left by its task, so no pod process survives the run.
        if self._running("containerd") is not None:
            for task in self.running_containers():
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            wait_until(lambda: not self.running_containers(), 30, "containers to exit", step=0.3)
        for process in reversed(self.processes):
            process.stop()
        _run(str(BIN / "kube-proxy"), "--cleanup", "--proxy-mode=iptables", check=False)
        _unmount_under(self.work)
        _unmount_under(self.socket.parent)
        _unmount_under(CONTAINERD_ROOT)  # rootfs overlays of killed containers
        _delete_orphaned_netns()  # the killed sandboxes' (CNI's DEL never ran)
        shutil.rmtree(self.socket.parent, ignore_errors=True)


@dataclass
class ProcessRecord:
    """The node cluster's processes, by PID, in a file outside the run's work
    directory. Each runs in its own session, so a test run killed before its
    teardown leaves them all running; the next run stops them by their PIDs,
    each checked against its command line first (a PID may have been reused)."""

    path: Path

    def stop_recorded(self) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        for line in lines:
            pid, _, program = line.partition(" ")
            if pid == "mounts":
                continue
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue  # gone
            if " ".join(argv[:2]) == program:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(pid), signal.SIGKILL)
        for line in lines:  # then the kubelet's volume mounts the dead run left
            kind, _, path = line.partition(" ")
            if kind == "mounts":
                _unmount_under(Path(path))
        self.path.unlink()

    def add(self, *processes: ManagedProcess) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.writelines(f"{p.pid} {' '.join(p.argv[:2])}\n" for p in processes)

    def add_mounts(self, root: Path) -> None:
        """Mounts under ``root`` are the run's: unmounted if it is killed."""
        with self.path.open("a") as out:
            out.write(f"mounts {root.resolve()}\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _delete_orphaned_netns() -> None:
    """Pod network namespaces no process is in any more: a killed run's,
    whose sandboxes died without CNI's DEL."""
    in_use = set()
    for ns in Path("/proc").glob("[0-9]*/ns/net"):
        with contextlib.suppress(OSError):
            in_use.add(ns.stat().st_ino)
    netns = Path("/var/run/netns")
    for path in netns.glob("cni-*") if netns.is_dir() else []:
        with contextlib.suppress(OSError):
            if path.stat().st_ino not in in_use:
                _run("ip", "netns", "delete", path.name, check=False)


def _unmount_under(path: Path) -> None:
    """kubelet's volume mounts (tmpfs for tokens) and containerd's, deepest first."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    prefix = str(path.resolve()) + "/"
    for target in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        _run("umount", "-l", target, check=False)


def build_images(log: Path) -> None:
    """tools/node/images.sh: debootstrap base, wheelhouse, podman builds (cached)."""
    with log.open("w") as out:
        result = subprocess.run(
            ["bash", str(ROOT / "tools" / "node" / "images.sh")],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
    if result.returncode != 0:
        raise RuntimeError(f"tools/node/images.sh failed:\n{log.read_text()[-3000:]}")


def _containerd(work: Path, socket: Path, network: NodeNetwork) -> ManagedProcess:
    """Its root (images, unpacked layers) is kept in the cache between runs;
    its state (sockets, shims, pod network namespaces) is this run's."""
    cni_conf = work / "cni"
    cni_conf.mkdir(parents=True, exist_ok=True)
    (cni_conf / "10-streamgrid.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "streamgrid",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": network.bridge,
                        "isGateway": True,
                        "ipMasq": False,  # nothing to masquerade for: no traffic leaves
                        "hairpinMode": True,  # a pod reaching itself through a Service
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": network.pod_cidr, "gateway": network.node_ip}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(work / "ipam"),
                        },
                    }
                ],
            }
        )
    )
    config = work / "containerd.toml"
    config.write_text(
        f"""version = 2
root = "{CONTAINERD_ROOT}"
state = "{socket.parent / "state"}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE, so no process may lower its OOM score
  # (the pause container asks for -998): clamp to containerd's own instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
"""
    )
    process = ManagedProcess(
        "containerd", ["containerd", "--config", str(config)], work / "containerd.log"
    ).start()
    wait_until(lambda: socket.exists() or not process.alive(), 30, "containerd's socket")
    if not process.alive():
        raise RuntimeError("containerd exited:\n" + process.log_text()[-3000:])
    return process


def _kubelet(kube: KubeCluster, work: Path, socket: Path, network: NodeNetwork) -> ManagedProcess:
    # For pods with dnsPolicy Default: no resolver at all, so no lookup leaves.
    resolv = work / "resolv.conf"
    resolv.write_text("# no upstream DNS on the test node\n")
    config = work / "kubelet.yaml"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "address": network.node_ip,
                "port": 10250,
                "readOnlyPort": 0,
                "healthzBindAddress": "127.0.0.1",
                "healthzPort": free_port(),
                # The API server's requests (logs, exec) come unauthenticated.
                "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
                "authorization": {"mode": "AlwaysAllow"},
                "cgroupDriver": "cgroupfs",  # no systemd here
                "failCgroupV1": False,  # this machine's cgroups are a v1/v2 hybrid
                "failSwapOn": False,
                "oomScoreAdj": 0,  # -999 needs CAP_SYS_RESOURCE, which root lacks here
                "containerRuntimeEndpoint": f"unix://{socket}",
                "resolvConf": str(resolv),
                "clusterDNS": [network.node_ip],  # CoreDNS, on the host (_coredns)
                "clusterDomain": CLUSTER_DOMAIN,
                "evictionHard": {
                    "memory.available": "100Mi",
                    "nodefs.available": "1%",
                    "imagefs.available": "1%",
                    "nodefs.inodesFree": "1%",
                },
                "imageGCHighThresholdPercent": 100,
                "imageGCLowThresholdPercent": 99,
                "serializeImagePulls": False,
                "syncFrequency": "10s",
                "nodeStatusUpdateFrequency": "5s",
            }
        )
    )
    return ManagedProcess(
        "kubelet",
        [
            str(BIN / "kubelet"),
            f"--config={config}",
            f"--kubeconfig={kube.kubeconfig}",
            f"--root-dir={work / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={network.node_ip}",
            "--v=1",
        ],
        work / "kubelet.log",
    ).start()


def _coredns(kube: KubeCluster, work: Path, network: NodeNetwork) -> ManagedProcess:
    """Cluster DNS for the pods, on the node's address: Services and pods of
    cluster.local from the API server; every other name is NXDOMAIN, so no
    query is forwarded off the machine."""
    ready_port = free_port()
    corefile = work / "Corefile"
    corefile.write_text(
        f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 {{
    bind {network.node_ip}
    errors
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{
        kubeconfig {kube.kubeconfig} test
        pods insecure
    }}
}}
.:53 {{
    bind {network.node_ip}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
    )
    process = ManagedProcess(
        "coredns", [str(BIN / "coredns"), "-conf", str(corefile)], work / "coredns.log"
    ).start()
    process.wait_for_http(f"http://127.0.0.1:{ready_port}/ready", 30, "CoreDNS ready", step=0.2)
    return process


def _kube_proxy(kube: KubeCluster, work: Path, network: NodeNetwork) -> ManagedProcess:
    return ManagedProcess(
        "kube-proxy",
        [
            str(BIN / "kube-proxy"),
            f"--kubeconfig={kube.kubeconfig}",
            f"--hostname-override={NODE_NAME}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={network.pod_cidr}",
            f"--nodeport-addresses={network.node_ip}/32",  # NodePorts on the bridge only
            f"--healthz-bind-address=127.0.0.1:{free_port()}",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            # Leave the kernel's conntrack sysctls as they are.
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
        ],
        work / "kube-proxy.log",
    ).start()


def _scheduler(kube: KubeCluster, work: Path) -> ManagedProcess:
    return ManagedProcess(
        "kube-scheduler",
        [
            str(BIN / "kube-scheduler"),
            f"--kubeconfig={kube.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
        ],
        work / "kube-scheduler.log",
    ).start()


def start_node(
    kube: KubeCluster,
    network: NodeNetwork,
    work: Path,
    bring_up: BringUp,
    record: ProcessRecord,
) -> KubeletNode:
    work.mkdir(parents=True, exist_ok=True)
    record.add_mounts(work)
    RUN_DIR.mkdir(parents=True, exist_ok=True)

    socket = RUN_DIR / "containerd.sock"
    socket.unlink(missing_ok=True)
    processes: list[ManagedProcess] = []
    node = KubeletNode(kube, network, socket, work, processes)

    def started(process: ManagedProcess) -> None:
        processes.append(process)
        record.add(process)

    try:
        with bring_up.step("containerd"):
            started(_containerd(work, socket, network))
        _remove_leftover_containers(node)
        _delete_orphaned_netns()
        with bring_up.step("import images into containerd (changed ones)"):
            present = _image_digests(node)
            for name in IMAGE_NAMES:
                archive = IMAGES / f"{name}.tar"
                ref, digest = _archive_image(archive)
                if present.get(ref) != digest:
                    node.ctr("images", "import", str(archive))
        with bring_up.step("CoreDNS"):
            started(_coredns(kube, work, network))
        with bring_up.step("kubelet, kube-proxy, kube-scheduler: node Ready"):
            started(_kubelet(kube, work, socket, network))
            started(_kube_proxy(kube, work, network))
            started(_scheduler(kube, work))
            wait_until(lambda: _node_ready(node), 120, "the node to be Ready", step=0.5)
        return node
    except BaseException:
        node.stop()
        raise


def _archive_image(archive: Path) -> tuple[str, str]:
    """(name, manifest digest) of the one image in an OCI archive."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None, archive
        manifest = json.load(member)["manifests"][0]
    return manifest["annotations"]["org.opencontainers.image.ref.name"], manifest["digest"]


def _image_digests(node: KubeletNode) -> dict[str, str]:
    rows = node.ctr("images", "ls").splitlines()[1:]  # REF TYPE DIGEST ...
    return {row.split()[0]: row.split()[2] for row in rows if row.strip()}


def _remove_leftover_containers(node: KubeletNode) -> None:
    """A run killed before its teardown leaves container records in the kept
    root; the kubelet would otherwise try to reconcile them."""
    for container in node.ctr("containers", "ls", "-q").split():
        node.ctr("tasks", "kill", "-s", "SIGKILL", container, check=False)
        node.ctr("tasks", "delete", "--force", container, check=False)
        node.ctr("containers", "delete", container, check=False)


def _node_ready(node: KubeletNode) -> bool:
    for process in node.processes:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_text()[-3000:]}")
    out = node.kube.kubectl(
        "get",
        "node",
        NODE_NAME,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        check=False,
    )
    return out.strip() == "True"
