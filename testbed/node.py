"""A stand-in for a node (kubelet + container runtime), for the cluster tests.

THIS IS NOT A KUBELET. There is no kubelet at this rung; the real node is
its own issue. The stand-in does what a kubelet would do for our capture
pods, with the pod's own data:

- binds each new capture pod to the node "standin-node", so deletions are
  graceful as on a real node (the API server deletes an unbound pod at once);
- runs the pod's container command (``python -m streamgrid.capture``) with
  the pod's env, resolving ``secretKeyRef`` values through the API, as a
  local process. Progress reaches the API server as it would in a pod, but
  with the test's admin token and CA instead of a service-account token;
- writes the pod's status: Running while the process runs, Succeeded or
  Failed with the exit code when it ends;
- on graceful deletion sends SIGTERM, waits up to the grace period (then
  SIGKILL), and removes the pod with grace 0, as a kubelet finishes it.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from streamgrid.core.timestamps import format_utc

from .kube import KubeCluster

NODE = "standin-node"


def _now() -> str:
    return format_utc(datetime.now(UTC))


@dataclass
class RunningPod:
    name: str
    process: subprocess.Popen[bytes]
    grace: int
    terminating: bool = False
    # A pod's name comes back with each replacement: act on this pod only.
    uid: str = ""


@dataclass
class NodeStandIn:
    cluster: KubeCluster
    namespace: str
    log_dir: Path
    selector: str = "app.kubernetes.io/component=capture"
    pods: dict[str, RunningPod] = field(default_factory=dict)
    started_count: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _finishing: set[str] = field(default_factory=set)  # uids being finished

    def start(self) -> NodeStandIn:
        self.core = client.CoreV1Api(self.cluster.api_client())
        threading.Thread(target=self._watch, name="node-standin", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            pods = list(self.pods.values())
        for pod in pods:
            if pod.process.poll() is None:
                pod.process.send_signal(signal.SIGTERM)
        for pod in pods:
            try:
                pod.process.wait(15)
            except subprocess.TimeoutExpired:
                pod.process.kill()

    # -- the "kubelet" loop --------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.selector,
                    timeout_seconds=30,
                ):
                    if self._stop.is_set():
                        return
                    self._on_event(event["type"], event["object"])
            except Exception:  # noqa: BLE001 - re-watch, as a kubelet would; say why
                with (self.log_dir / "standin.errors").open("a") as f:
                    f.write(traceback.format_exc() + "\n")
                self._stop.wait(0.5)

    def _on_event(self, kind: str, pod: client.V1Pod) -> None:
        name = pod.metadata.name
        uid = pod.metadata.uid
        if kind == "DELETED":
            self._terminate(name, 0, uid)
            return
        if pod.metadata.deletion_timestamp is not None:
            grace = pod.metadata.deletion_grace_period_seconds or 30
            threading.Thread(target=self._finish, args=(name, grace, uid), daemon=True).start()
            return
        with self._lock:
            known = name in self.pods
        if not known and pod.status.phase in (None, "Pending"):
            self._run(pod)

    def _run(self, pod: client.V1Pod) -> None:
        name = pod.metadata.name
        if not pod.spec.node_name:
            body = client.V1Binding(
                metadata=client.V1ObjectMeta(name=name),
                target=client.V1ObjectReference(kind="Node", name=NODE),
            )
            try:
                self.core.create_namespaced_binding(self.namespace, body, _preload_content=False)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        container = pod.spec.containers[0]
        env = dict(os.environ)
        for item in container.env or []:
            value = self._env_value(item)
            if value is not None:
                env[item.name] = value
        env.update(
            {
                "STREAMGRID_KUBE_API_URL": self.cluster.url,
                "STREAMGRID_KUBE_TOKEN_FILE": str(self.cluster.token_file),
                "STREAMGRID_KUBE_CA_FILE": str(self.cluster.ca_file),
                "HOME": str(self.log_dir),
                # Pods share this machine's network here: any free port, on loopback.
                "STREAMGRID_HEALTH_PORT": "0",
                "STREAMGRID_HEALTH_HOST": "127.0.0.1",
            }
        )
        command = [sys.executable if c == "python" else c for c in container.command]
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        grace = pod.spec.termination_grace_period_seconds or 30
        with self._lock:
            self.pods[name] = RunningPod(name, process, grace, uid=pod.metadata.uid)
            self.started_count += 1
        self._status(name, "Running", {"running": {"startedAt": _now()}}, ready=True)
        threading.Thread(
            target=self._reap, args=(name, process, pod.metadata.uid), daemon=True
        ).start()

    def _env_value(self, item: client.V1EnvVar) -> str | None:
        if item.value is not None:
            return str(item.value)
        ref = item.value_from.secret_key_ref if item.value_from else None
        if ref is None:
            return None
        try:
            secret = self.core.read_namespaced_secret(ref.name, self.namespace)
        except ApiException:
            if ref.optional:
                return None
            raise
        data = (secret.data or {}).get(ref.key)
        if data is None:
            return None
        return base64.b64decode(data).decode()

    def _reap(self, name: str, process: subprocess.Popen[bytes], uid: str) -> None:
        code = process.wait()
        with self._lock:
            running = self.pods.get(name)
            terminating = running.terminating if running and running.uid == uid else True
        if terminating:
            return  # _finish reports it
        phase = "Succeeded" if code == 0 else "Failed"
        self._status(
            name, phase, {"terminated": {"exitCode": code, "finishedAt": _now()}}, ready=False
        )

    def _finish(self, name: str, grace: int, uid: str) -> None:
        with self._lock:  # one finisher per pod: each update of a deleted pod calls this
            if uid in self._finishing:
                return
            self._finishing.add(uid)
        code = self._terminate(name, grace, uid)
        if code is not None:
            self._status(
                name,
                "Succeeded" if code == 0 else "Failed",
                {"terminated": {"exitCode": code, "finishedAt": _now()}},
                ready=False,
            )
        try:  # this pod, not a successor of the same name (as a kubelet does)
            self.core.delete_namespaced_pod(
                name,
                self.namespace,
                grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
                ),
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _terminate(self, name: str, grace: int, uid: str) -> int | None:
        with self._lock:
            running = self.pods.get(name)
            if running is None or running.terminating or running.uid != uid:
                return None
            running.terminating = True
        process = running.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(max(grace, 1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with self._lock:
            self.pods.pop(name, None)
        return process.returncode

    def _status(self, name: str, phase: str, state: dict[str, Any], ready: bool) -> None:
        body = {
            "status": {
                "phase": phase,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "lastTransitionTime": _now(),
                    }
                ],
                "containerStatuses": [
                    {
                        "name": "capture",
                        "ready": ready,
                        "restartCount": 0,
                        "image": "local",
                        "imageID": "",
                        "state": state,
                    }
                ],
            }
        }
        try:
            self.core.patch_namespaced_pod_status(name, self.namespace, body)
        except ApiException as exc:
            if exc.status != 404:
                raise
