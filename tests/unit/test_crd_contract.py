"""The contract module (core/crd.py) against the CRD in charts/, both ways:
every field of the spec and status models is declared in the CRD's
structural schema (the API server silently drops an undeclared one), every
field declared there is in the models, and what the code writes (the
operator's status patches, the capture pod's reports, the spec the gateway
and the plugin build) passes through them."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from streamgrid.core import crd
from streamgrid.core.models import StreamState

CHART = Path(__file__).parents[2] / "charts/streamgrid"
CRD = CHART / "crds/videostreams.streamgrid.io.yaml"
Schema = dict[str, Any]


def openapi_schema() -> Schema:
    found: Schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    return found


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``X | None`` or ``list[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (types.UnionType, typing.Union, list):
        for arg in get_args(annotation):
            found = model_of(arg)
            if found is not None:
                return found
    return None


def mismatches(model: type[BaseModel], schema: Schema, where: str) -> list[str]:
    """Fields of ``model`` not in ``schema`` and properties of ``schema`` not
    in ``model``, nested models and arrays of objects included."""
    if schema.get("type") == "array":
        schema = schema["items"]
    declared = schema.get("properties") or {}
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    found = [f"{where}.{n}: in the model, not in the CRD" for n in set(fields) - set(declared)]
    found += [f"{where}.{n}: in the CRD, not in the model" for n in set(declared) - set(fields)]
    for name in set(fields) & set(declared):
        inner = model_of(fields[name].annotation)
        if inner is not None:
            found += mismatches(inner, declared[name], f"{where}.{name}")
        elif declared[name].get("type") == "object" and declared[name].get("properties"):
            found.append(f"{where}.{name}: an object in the CRD, not a model")
    return found


def test_the_models_and_the_crd_declare_the_same_fields() -> None:
    properties = openapi_schema()["properties"]
    found = mismatches(crd.StreamSpec, properties["spec"], "spec")
    found += mismatches(crd.StreamStatus, properties["status"], "status")
    assert not found, "\n".join(sorted(found))


def test_the_names_are_the_crds() -> None:
    document = yaml.safe_load(CRD.read_text())
    spec = document["spec"]
    assert document["metadata"]["name"] == f"{crd.PLURAL}.{crd.GROUP}"
    assert spec["group"] == crd.GROUP
    assert spec["names"]["kind"] == crd.KIND
    assert spec["names"]["plural"] == crd.PLURAL
    assert spec["names"]["shortNames"] == [crd.SHORT_NAME]
    assert [v["name"] for v in spec["versions"]] == [crd.VERSION]


def test_the_state_enums_are_the_engines() -> None:
    status = openapi_schema()["properties"]["status"]["properties"]
    assert status["state"]["enum"] == [s.value for s in StreamState]
    # A pod reports what a worker can be in, or that it goes to be replaced.
    from streamgrid.capture.kube_progress import RESTARTING

    reported = {s.value for s in StreamState} | {RESTARTING}
    assert set(status["captureState"]["enum"]) <= reported


def test_an_undeclared_status_field_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="notDeclared"):
        crd.status_patch({"notDeclared": 1})
    assert crd.status_patch({"podName": None, "restarts": 2}) == {"podName": None, "restarts": 2}


def test_what_the_operator_writes_is_declared() -> None:
    """Every status patch plan() makes over the operator's plan tests'
    scenarios (they write through crd.status_patch, which refuses any other
    field): here a fresh stream, a running one, one stopping, one failed."""
    from streamgrid.operator.reconcile import plan
    from streamgrid.operator.settings import OperatorSettings

    settings = OperatorSettings(store_url="s3://b/p")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    stream: dict[str, Any] = {
        "metadata": {"name": "cam", "namespace": "ns", "generation": 1, "uid": "u"},
        "spec": {"source": {"url": "rtsp://cam/x"}, "state": "Running"},
    }
    fields: set[str] = set()
    created = plan(stream, None, settings, now)
    fields |= set(created.status)
    running_pod = {**(created.create_pod or {}), "status": {"phase": "Running"}}
    stream["status"] = {**created.status, "captureState": "Active"}
    fields |= set(plan(stream, running_pod, settings, now, progress_interval=5.0).status)
    stopping = {**stream, "spec": {**stream["spec"], "state": "Stopped"}}
    fields |= set(plan(stopping, running_pod, settings, now).status)
    exited = {
        **running_pod,
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": int(crd.WorkerExit.FAILED)}}}
            ],
        },
    }
    fields |= set(plan(stream, exited, settings, now).status)
    declared = set(openapi_schema()["properties"]["status"]["properties"])
    assert fields and fields <= declared, fields - declared
    assert {"state", "conditions", "podName", "failedInputs"} <= fields


def test_what_a_capture_pod_reports_is_declared() -> None:
    from streamgrid.capture.kube_progress import status_of
    from streamgrid.capture.progress import Progress
    from streamgrid.core.grid_store import StoredGrid

    grid = StoredGrid("s3://b/p/ns/cam/grids/g.jpg", "g.jpg", 900, 900, 9, 1.0)
    progress = Progress(StreamState.ACTIVE, frames_captured=3, kept=3, last_frame_at=1.0, grid=grid)
    report = status_of(progress)
    declared = openapi_schema()["properties"]["status"]
    assert not mismatches_of_values(report, declared, "status"), report
    assert crd.status_patch(report) == report


def mismatches_of_values(value: Any, schema: Schema, where: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    declared = schema.get("properties") or {}
    found = [f"{where}.{k}" for k in value if k not in declared]
    for key, inner in value.items():
        if key in declared:
            found += mismatches_of_values(inner, declared[key], f"{where}.{key}")
    return found


def test_the_spec_the_gateway_and_the_plugin_build_is_declared() -> None:

    from streamgrid.kubectl_plugin import StartOptions, stream_body

    declared = openapi_schema()["properties"]
    body, secret = stream_body(
        StartOptions(name="cam", url="rtsp://u:p@cam/x", tls_verify=False, columns=4)
    )
    assert secret == {"username": "u", "password": "p"}
    assert not mismatches_of_values(body["spec"], declared["spec"], "spec"), body
    assert body["apiVersion"] == crd.API_VERSION and body["kind"] == crd.KIND
    assert body["spec"]["source"]["credentialsSecretRef"] == {
        "name": crd.credentials_secret_name("cam")
    }

    spec = crd.stream_spec(
        "rtsp://cam/x",
        capture_interval=2.0,
        top_k=9,
        transport="udp",
        tls_verify=False,
        columns=3,
        tile_width=200,
        tile_height=100,
        credentials_secret="s",
    )
    built = spec.to_api()
    assert not mismatches_of_values(built, declared["spec"], "spec")
    assert built["source"] == {
        "url": "rtsp://cam/x",
        "transport": "udp",
        "tlsVerify": False,
        "credentialsSecretRef": {"name": "s"},
    }
