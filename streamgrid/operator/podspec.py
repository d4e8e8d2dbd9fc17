"""The capture Pod of a VideoStream: a pure function of the resource and settings."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..core import crd
from ..core.crd import (
    COMPONENT_LABEL,
    SPEC_HASH_ANNOTATION,
    STREAM_LABEL,
    TEMPLATE_HASH_ANNOTATION,
)
from .settings import OperatorSettings

CAPTURE = crd.CAPTURE_COMPONENT
# The worker's liveness endpoint (capture/health.py), in the pod's own network.
HEALTH_PORT = 8081
# What of the spec capture_pod() turns into the pod; state and
# ttlSecondsAfterStopped (and retention) are the operator's, not the pod's.
CAPTURE_SPEC_FIELDS = ("source", "captureInterval", "topK", "grid")


def spec_hash(spec: dict[str, Any]) -> str:
    """A short, stable hash of the capture-relevant part of a stream's spec."""
    relevant = {key: spec.get(key) for key in CAPTURE_SPEC_FIELDS}
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


pod_name = crd.capture_pod_name


store_url_for = crd.store_url_for


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _grid_env(grid: dict[str, Any]) -> list[dict[str, str]]:
    """The stream's grid geometry: the pod stores that grid at a graceful stop
    (status.grid), for users without the gateway."""
    env = [
        {"name": "STREAMGRID_GRID_AT_STOP", "value": "true"},
        {"name": "STREAMGRID_GRID_TILE_WIDTH", "value": str(int(grid.get("tileWidth", 300)))},
        {"name": "STREAMGRID_GRID_TILE_HEIGHT", "value": str(int(grid.get("tileHeight", 300)))},
    ]
    if grid.get("columns"):
        env.append({"name": "STREAMGRID_GRID_COLUMNS", "value": str(int(grid["columns"]))})
    return env


# A stream that stands for every stream: the template's hash leaves out what
# comes from a stream's own spec and name.
_TEMPLATE_STREAM: dict[str, Any] = {
    "metadata": {"name": "template", "namespace": "template", "uid": ""},
    "spec": {"source": {"url": "rtsp://template/"}},
}


def template_hash(settings: OperatorSettings) -> str:
    """A short hash of the capture pod as these settings make it, whatever
    the stream: a pod whose template hash differs from the operator's runs an
    older template (another image, other resources) and is rolled over."""
    spec = _pod_body(_TEMPLATE_STREAM, settings)["spec"]
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def capture_pod(stream: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    pod = _pod_body(stream, settings)
    pod["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] = template_hash(settings)
    return pod


def _pod_body(stream: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    meta, spec = stream["metadata"], stream["spec"]
    name, namespace = meta["name"], meta["namespace"]
    source = spec["source"]
    env: list[dict[str, Any]] = [
        {"name": "STREAMGRID_STREAM_ID", "value": name},
        {"name": "STREAMGRID_SOURCE_URL", "value": source["url"]},
        {
            "name": "STREAMGRID_CAPTURE_INTERVAL",
            "value": repr(float(spec.get("captureInterval", 1))),
        },
        {"name": "STREAMGRID_TOP_K", "value": str(int(spec.get("topK", 9)))},
        *_grid_env(spec.get("grid") or {}),
        {"name": "STREAMGRID_RTSP_TRANSPORT", "value": source.get("transport", "tcp")},
        {"name": "STREAMGRID_TLS_VERIFY", "value": str(source.get("tlsVerify", True)).lower()},
        {"name": "STREAMGRID_STORE_URL", "value": store_url_for(settings.store_url, namespace)},
        {"name": "STREAMGRID_S3_REGION", "value": settings.s3_region},
        {"name": "STREAMGRID_PROGRESS", "value": "kube"},
        {"name": "STREAMGRID_PROGRESS_INTERVAL", "value": str(settings.progress_interval_seconds)},
        {"name": "STREAMGRID_KUBE_NAMESPACE", "value": namespace},
        {"name": "STREAMGRID_KUBE_NAME", "value": name},
        {"name": "STREAMGRID_LOG_LEVEL", "value": settings.log_level},
        # The source policy (core/sources.py), checked by the pod at each connection.
        {"name": "STREAMGRID_SOURCE_ALLOW_CIDRS", "value": ",".join(settings.source_allow_cidrs)},
        {
            "name": "STREAMGRID_SOURCE_DENY_CIDRS",
            "value": ",".join(settings.capture_source_deny_cidrs()),
        },
        {
            "name": "STREAMGRID_SOURCE_DENY_LOOPBACK",
            "value": str(settings.source_deny_loopback).lower(),
        },
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "STREAMGRID_HEALTH_PORT", "value": str(HEALTH_PORT)},
    ]
    if settings.s3_endpoint_url:
        env.append({"name": "STREAMGRID_S3_ENDPOINT_URL", "value": settings.s3_endpoint_url})
    if settings.s3_secret_name:
        env.append(
            _secret_env(
                "STREAMGRID_S3_ACCESS_KEY_ID", settings.s3_secret_name, settings.s3_access_key_key
            )
        )
        env.append(
            _secret_env(
                "STREAMGRID_S3_SECRET_ACCESS_KEY",
                settings.s3_secret_name,
                settings.s3_secret_key_key,
            )
        )
    credentials = source.get("credentialsSecretRef")
    if credentials:
        secret = credentials["name"]
        # Each key is optional (username/password, or url); the Secret itself
        # must exist, which the operator checks before it creates the pod.
        env += [
            _secret_env("STREAMGRID_SOURCE_USERNAME", secret, "username", optional=True),
            _secret_env("STREAMGRID_SOURCE_PASSWORD", secret, "password", optional=True),
            _secret_env("STREAMGRID_SOURCE_FULL_URL", secret, "url", optional=True),
        ]
    labels = {
        "app.kubernetes.io/name": "streamgrid",
        "app.kubernetes.io/managed-by": "streamgrid-operator",
        COMPONENT_LABEL: CAPTURE,
        STREAM_LABEL: name,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(name),
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                SPEC_HASH_ANNOTATION: spec_hash(spec),
                # The worker's metrics on its health port (capture/metrics.py).
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(HEALTH_PORT),
                "prometheus.io/path": "/metrics",
            },
            "ownerReferences": [crd.owner_reference(name, meta["uid"], controller=True)],
        },
        "spec": {
            # The operator decides about restarts: a worker that exits 3 was
            # refused for good and must not be restarted.
            "restartPolicy": "Never",
            "serviceAccountName": settings.capture_service_account,
            "terminationGracePeriodSeconds": settings.termination_grace_seconds,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": CAPTURE,
                    "image": settings.capture_image,
                    "imagePullPolicy": settings.capture_image_pull_policy,
                    # The log's tail when it fails: the operator's Failed reason names it.
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "command": ["python", "-m", "streamgrid.capture"],
                    "env": env,
                    "ports": [{"name": "health", "containerPort": HEALTH_PORT}],
                    # 503 once the capture loop has not moved for its longest
                    # wait plus a store call (a camera down still beats): the
                    # kubelet's SIGTERM then flushes, the operator recreates.
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "health"},
                        "initialDelaySeconds": 10,
                        "periodSeconds": 10,
                        "timeoutSeconds": 3,
                        "failureThreshold": 3,
                    },
                    "resources": {
                        "requests": {
                            "cpu": settings.capture_cpu_request,
                            "memory": settings.capture_memory_request,
                        },
                        "limits": {"memory": settings.capture_memory_limit},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        },
    }
