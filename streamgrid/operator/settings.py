from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..core.restarts import DEFAULT_JITTER, RestartPolicy
from ..core.settings import CommaList, CommonSettings
from ..core.sources import SourcePolicy


class OperatorSettings(CommonSettings):
    """``STREAMGRID_<NAME>``; the store settings are what capture pods get."""

    namespace: str | None = None  # None: every namespace
    kubeconfig: str | None = None  # default: in-cluster, else $KUBECONFIG / ~/.kube/config
    capture_image: str = "localhost/streamgrid-capture:dev"
    capture_image_pull_policy: str = "IfNotPresent"
    capture_service_account: str = "streamgrid-capture"
    # Secret with the S3 credentials for capture pods (keys below).
    s3_secret_name: str | None = None
    s3_access_key_key: str = "accessKeyId"
    s3_secret_key_key: str = "secretAccessKey"
    default_ttl_seconds: int = Field(86400, ge=0)  # stopped streams are deleted after this
    # A capture pod that exits this many times in a row (never Active between)
    # fails the stream; each recreation waits initial, doubling up to max.
    pod_restart_limit: int = Field(20, ge=0)
    pod_backoff_initial_seconds: float = Field(1.0, ge=0, le=3600)
    pod_backoff_max_seconds: float = Field(300.0, ge=0, le=86400)
    pod_backoff_jitter: float = Field(DEFAULT_JITTER, ge=0, lt=1)  # each wait times 1 +- this
    termination_grace_seconds: int = Field(30, ge=1, le=600)
    # The shortest count-report period of a capture pod; it grows with the
    # fleet so that all pods together send at most status_writes_per_second
    # count reports (controller.FleetPacer). State changes go at once.
    progress_interval_seconds: float = Field(5.0, ge=0.5, le=300)
    status_writes_per_second: float = Field(40.0, gt=0, le=10000)
    capture_cpu_request: str = "20m"
    capture_memory_request: str = "96Mi"
    capture_memory_limit: str = "256Mi"
    # Every stream is reconciled on each event of its own or its pod's; this
    # resync, spread evenly over the interval, is from the cache (no API reads).
    reconcile_interval_seconds: float = Field(300.0, ge=0.5, le=3600)
    reconcile_workers: int = Field(8, ge=1, le=64)
    # Prometheus metrics (reconciles, their time: operator/metrics.py) on
    # http://metrics_host:metrics_port/metrics; no port: not served.
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    liveness_host: str = "0.0.0.0"  # probes come from the node
    liveness_port: int = 8080
    # -- Any namespace, and what a stream leaves behind (provision.py, retention.py).
    # Where the operator runs (the chart: the downward API): its S3 Secret is
    # copied from here into each namespace that gets a capture pod. Unset: namespace.
    operator_namespace: str | None = None
    # How often a namespace's ServiceAccount, Role, RoleBinding and Secret copy
    # are checked again (a deleted one comes back, a rotated Secret is recopied).
    provision_refresh_seconds: float = Field(300.0, ge=1, le=86400)
    # Namespaces other than the operator's get capture pods only when an admin
    # enabled them: the label streamgrid.io/capture=enabled, or listed here.
    # Their capture pods hold the store's credentials, so a namespace editor
    # must not be able to bring those into a namespace alone.
    capture_namespaces: CommaList = Field(default_factory=list)
    # What deleting a VideoStream (or its TTL) does to its frames and grids in
    # the store, unless the stream's spec.dataRetention says otherwise.
    data_retention: Literal["Delete", "Retain"] = "Delete"
    data_delete_retry_seconds: float = Field(10.0, ge=1, le=3600)
    # Deleting a stream never takes longer: after this, a capture pod stuck
    # Terminating or a failing store is given up on, the data left in place
    # (a DataDeleteAbandoned Event says where) and the finalizer released.
    data_delete_timeout_seconds: float = Field(60.0, ge=0, le=86400)
    # -- More than one replica (leader.py): the holder of this Lease (in
    # operator_namespace, else namespace) reconciles; the others wait, warm.
    leader_election: bool = True
    leader_election_lease: str = "streamgrid-operator"
    leader_election_lease_seconds: float = Field(15.0, gt=0, le=600)
    leader_election_renew_deadline_seconds: float = Field(10.0, gt=0, le=600)
    leader_election_retry_seconds: float = Field(2.0, gt=0, le=60)
    # A new capture pod template (image, resources: an upgrade) is rolled out
    # to running streams this many (or this share of them) at a time, each
    # batch waiting for its streams to run again.
    max_unavailable: str = Field("10%", pattern=r"^([1-9][0-9]*|[1-9][0-9]?%|100%)$")
    # The source policy's settings (CommonSettings) are what capture pods get;
    # the chart sets source_deny_loopback (in a pod, loopback is the pod itself).

    def lease_namespace(self) -> str:
        return self.operator_namespace or self.namespace or "default"

    def rollout_limit(self, streams: int) -> int:
        """How many streams may be without their pod at once in a rollout:
        max_unavailable, a share rounded down (as Deployments do), at least 1."""
        if self.max_unavailable.endswith("%"):
            return max(1, streams * int(self.max_unavailable[:-1]) // 100)
        return int(self.max_unavailable)

    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy(
            self.pod_backoff_initial_seconds,
            self.pod_backoff_max_seconds,
            self.pod_restart_limit,
            self.pod_backoff_jitter,
        )

    def capture_source_deny_cidrs(self) -> list[str]:
        """The deny list a capture pod gets: ours, and the API server's ClusterIP
        (which the pod would add itself; said here so the pod spec shows it).
        The API server's own endpoints are for source_deny_cidrs: on a small
        cluster they are a node's address, which may serve cameras too."""
        policy = SourcePolicy.from_cidrs(
            (), self.source_deny_cidrs, deny_hosts=[self.kubernetes_service_host or ""]
        )
        return list(dict.fromkeys(str(network) for network in policy.deny))
