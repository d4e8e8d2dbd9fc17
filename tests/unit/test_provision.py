"""What the operator makes in a stream's namespace (pure builders), and what
deleting a stream does to its data (over a recording API and a real
directory store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streamgrid.core.crd import PROVISIONED_LABEL
from streamgrid.core.models import FrameRecord
from streamgrid.core.stores.directory import DirectoryObjectStore
from streamgrid.core.stores.frames import FrameStore
from streamgrid.operator.provision import (
    CAPTURE_RULES,
    ProvisionError,
    capture_role,
    capture_role_binding,
    report_problem,
    secret_copy,
    service_account,
)
from streamgrid.operator.retention import StillRunning, finish_deleted_stream, retains_data
from streamgrid.operator.settings import OperatorSettings

RBAC = Path(__file__).parents[2] / "charts" / "streamgrid" / "templates" / "rbac.yaml"
SETTINGS = OperatorSettings(store_url="s3://bucket/frames", s3_secret_name="sg-s3")


def chart_capture_role_rules() -> list[dict[str, Any]]:
    """The chart's streamgrid-capture Role, its template lines left out."""
    for text in RBAC.read_text().split("\n---\n"):
        plain = "\n".join(line for line in text.splitlines() if "{{" not in line)
        doc = yaml.safe_load(plain) or {}
        metadata = doc.get("metadata") or {}
        if doc.get("kind") == "Role" and metadata.get("name") == "streamgrid-capture":
            rules: list[dict[str, Any]] = doc["rules"]
            return rules
    raise AssertionError("no streamgrid-capture Role in the chart")


def test_the_provisioned_role_grants_what_the_charts_does() -> None:
    assert chart_capture_role_rules() == CAPTURE_RULES
    role = capture_role("cams", "streamgrid-capture")
    assert role["metadata"] == {
        "name": "streamgrid-capture",
        "namespace": "cams",
        "labels": role["metadata"]["labels"],
    }
    assert role["rules"] == CAPTURE_RULES


def test_the_binding_gives_the_role_to_the_namespaces_capture_account() -> None:
    binding = capture_role_binding("cams", "streamgrid-capture")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "streamgrid-capture",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "streamgrid-capture", "namespace": "cams"}
    ]
    account = service_account("cams", "streamgrid-capture")
    for made in (binding, account):
        assert made["metadata"]["labels"][PROVISIONED_LABEL] == "streamgrid-operator"
        assert "ownerReferences" not in made["metadata"]  # serves every stream there


def test_the_secret_copy_carries_only_the_keys_pods_read_and_no_owner() -> None:
    source = {
        "metadata": {"name": "sg-s3", "namespace": "streamgrid", "uid": "u", "ownerReferences": []},
        "type": "Opaque",
        "data": {"accessKeyId": "YQ==", "secretAccessKey": "Yg==", "rootToken": "Yw=="},
    }
    copy = secret_copy(source, "cams", ["accessKeyId", "secretAccessKey"])
    assert copy["data"] == {"accessKeyId": "YQ==", "secretAccessKey": "Yg=="}
    assert copy["metadata"]["name"] == "sg-s3" and copy["metadata"]["namespace"] == "cams"
    assert set(copy["metadata"]) == {"name", "namespace", "labels"}
    with pytest.raises(ProvisionError, match="sg-s3 in namespace streamgrid has no key region"):
        secret_copy(source, "cams", ["accessKeyId", "region"])


class RecordingApi:
    """What the operator asked of the API server, and a pod that is there or not."""

    def __init__(self, stream: dict[str, Any], pod: dict[str, Any] | None = None) -> None:
        self.stream, self.pod = stream, pod
        self.calls: list[tuple[str, ...]] = []
        self.events: list[tuple[str, str, str]] = []
        self.patches: list[dict[str, Any]] = []
        self.pod_goes = True  # a deleted pod is gone at the next look

    def get_stream(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.stream

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pod

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None:
        self.calls.append(("delete_pod", namespace, name))
        if self.pod is not None and self.pod_goes:
            self.pod = None

    def event(self, stream: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def patch_stream_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.patches.append(status)


def a_stream(retention: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": {"url": "rtsp://cam/x"}}
    if retention:
        spec["dataRetention"] = retention
    return {"metadata": {"name": "cam", "namespace": "cams", "uid": "u"}, "spec": spec}


@pytest.fixture
def store(tmp_path: Path) -> FrameStore:
    frames = FrameStore(DirectoryObjectStore(tmp_path))
    for stream_id in ("cam", "cam2"):  # cam2 shares the prefix's first letters
        frames.put_frame(stream_id, FrameRecord(1, 100.0, 1.0), b"jpeg")
        frames.put_grid(stream_id, "grid.jpg", b"jpeg")
    return frames


def test_a_deleted_streams_pod_is_stopped_before_its_data_goes(store: FrameStore) -> None:
    api = RecordingApi(a_stream(), pod={"metadata": {"name": "cam-capture"}})
    api.pod_goes = False
    with pytest.raises(StillRunning):  # Kopf calls again; the data stays meanwhile
        finish_deleted_stream(api, SETTINGS, "cams", "cam", lambda _s, _n: store)
    assert api.calls == [("delete_pod", "cams", "cam-capture")]
    assert store.list_frames("cam")
    api.pod = None  # it stopped
    finish_deleted_stream(api, SETTINGS, "cams", "cam", lambda _s, _n: store)
    assert list(store.objects.list("cam/")) == []


def test_a_pod_that_does_not_stop_keeps_the_data_and_says_so(store: FrameStore) -> None:
    api = RecordingApi(a_stream(), pod={"metadata": {"name": "cam-capture"}})
    api.pod_goes = False
    with pytest.raises(StillRunning, match="cam-capture"):
        within = SETTINGS.data_delete_timeout_seconds / 2  # the default give-up is 60 s now
        finish_deleted_stream(api, SETTINGS, "cams", "cam", lambda _s, _n: store, elapsed=within)
    assert store.list_frames("cam")  # nothing deleted while the pod may still write


def test_a_deleted_streams_prefix_is_emptied_and_no_other(store: FrameStore) -> None:
    api = RecordingApi(a_stream())
    finish_deleted_stream(api, SETTINGS, "cams", "cam", lambda _s, _n: store)
    assert list(store.objects.list("cam/")) == []
    assert len(list(store.objects.list("cam2/"))) == 2
    assert [(t, r) for t, r, _ in api.events] == [("Normal", "DataDeleted")]
    assert "deleted 2 objects" in api.events[0][2]


def test_retain_keeps_the_data_and_the_spec_overrides_the_operator(store: FrameStore) -> None:
    api = RecordingApi(a_stream("Retain"))
    finish_deleted_stream(api, SETTINGS, "cams", "cam", lambda _s, _n: store)
    assert len(list(store.objects.list("cam/"))) == 2
    assert [r for _, r, _ in api.events] == ["DataRetained"]
    retaining = SETTINGS.model_copy(update={"data_retention": "Retain"})
    assert retains_data({}, retaining) and not retains_data({"dataRetention": "Delete"}, retaining)
    assert not retains_data({}, SETTINGS)


def test_a_problem_is_reported_once_and_never_leaves_state_blank() -> None:
    api = RecordingApi(a_stream())
    report_problem(api, api.stream, "ProvisioningFailed", "cannot create ServiceAccount x")
    assert api.patches == [{"reason": "cannot create ServiceAccount x", "state": "Pending"}]
    assert api.events == [("Warning", "ProvisioningFailed", "cannot create ServiceAccount x")]
    api.stream["status"] = {"state": "Pending", "reason": "cannot create ServiceAccount x"}
    report_problem(api, api.stream, "ProvisioningFailed", "cannot create ServiceAccount x")
    assert len(api.events) == 1 and len(api.patches) == 1


def test_a_long_problem_fits_the_crds_reason() -> None:
    """An API server's message can be long; a reason over the CRD's 1024
    would make the status PATCH fail and the problem go unsaid."""
    api = RecordingApi(a_stream())
    report_problem(api, api.stream, "ReconcileFailed", "denied: " + "x" * 5000)
    assert len(api.patches[0]["reason"]) == 1024
    assert api.patches[0]["reason"].endswith("\u2026")
