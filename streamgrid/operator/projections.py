"""What the operator keeps of the objects it watches (its watch caches'
projections, core/watch_cache.py): what reconcile reads, nothing more."""

from __future__ import annotations

from typing import Any

from ..core.watch_cache import without_managed_fields

Obj = dict[str, Any]


def slim_stream(obj: Obj) -> Obj:
    """What reconcile reads of a stream: all but managedFields."""
    return without_managed_fields(obj)


_POD_META = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "labels",
    "annotations",
    "deletionTimestamp",
    "creationTimestamp",
)


def slim_pod(obj: Obj) -> Obj:
    """What reconcile reads of a capture pod: identity, its spec hash, the
    containers' env (to say what a replacement changes) and its status."""
    meta = obj.get("metadata", {})
    containers = (obj.get("spec") or {}).get("containers") or []
    status = obj.get("status") or {}
    return {
        "metadata": {k: meta[k] for k in _POD_META if k in meta},
        "spec": {"containers": [{"name": c.get("name"), "env": c.get("env")} for c in containers]},
        "status": {
            "phase": status.get("phase"),
            "containerStatuses": [
                {"name": s.get("name"), "state": s.get("state"), "ready": s.get("ready")}
                for s in status.get("containerStatuses") or []
            ],
        },
    }
