"""The OpenAPI document tells the truth: Schemathesis generates requests from
it against the real `streamgrid serve` (embedded runtime, real camera), and
every answer must be documented, with its status code, media type and body
schema; no answer may be a server error. And the docs pages work offline."""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation, BaseSchema

from testbed.api import wait_for
from testbed.camera import Camera
from testbed.server import Server

CHECKS: list[Any] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The budget: a few dozen requests per operation and mode; the whole run takes
# seconds, and stays far below the server's stream cap.
EXAMPLES = 30
Operation = APIOperation[Any, Any, Any, Any]


@pytest.fixture
def schema(server: Server) -> BaseSchema:
    return schemathesis.openapi.from_url(server.base_url + "/openapi.json")


def operations(schema: BaseSchema) -> list[Operation]:
    results = list(schema.get_all_operations())
    assert all(isinstance(r, Ok) for r in results), results  # the document is valid
    found = [r.ok() for r in results if isinstance(r, Ok)]
    assert {op.label for op in found} >= {
        "POST /start",
        "GET /list",
        "POST /status/{stream_id}",
        "GET /streams/{stream_id}",
        "POST /stop/{stream_id}",
        "POST /stop",
        "GET /healthz",
    }
    return found


def fuzz(operation: Operation, mode: GenerationMode) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # nothing written into the work tree
        derandomize=True,  # the same requests every run: a failure reproduces
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case[Operation]) -> None:
        case.call_and_validate(checks=CHECKS, timeout=30)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_get_documented_answers(
    server: Server, schema: BaseSchema, mode: GenerationMode
) -> None:
    for operation in operations(schema):
        # Only query parameters and bodies can be wrong: a path's stream id
        # is any text, and the other operations take nothing to get wrong.
        if mode == GenerationMode.POSITIVE or len(operation.query) or len(operation.body):
            fuzz(operation, mode)
    with server.client() as client:  # nothing the fuzzing started keeps running
        client.post("/stop")


def call(schema: BaseSchema, label: str, **parts: Any) -> Any:
    """One request, made and checked against the document like the generated ones."""
    method, path = label.split(" ", 1)
    case = schema[path][method].Case(**parts)
    return case.call_and_validate(checks=CHECKS, timeout=60)


def test_real_streams_get_documented_answers(
    server: Server, camera: Camera, schema: BaseSchema
) -> None:
    """The successful answers, from a real stream: its id is not one a
    generator guesses."""
    started = call(
        schema,
        "POST /start",
        body={"rtsp_url": camera.url()},
        media_type=("application/json"),
        query={"capture_interval": 0.2, "top_k": 4},
    )
    stream_id = started.json()["stream_id"]
    with server.client() as client:
        wait_for(client, stream_id, lambda d: d["kept"] >= 2, 20, "2 kept frames")
    form = call(
        schema,
        "POST /start",
        body={"rtsp_url": camera.url()},
        media_type="application/x-www-form-urlencoded",
    )
    other = form.json()["stream_id"]
    call(schema, "GET /list")
    for label in ("POST /status/{stream_id}", "GET /streams/{stream_id}"):
        call(schema, label, path_parameters={"stream_id": stream_id})
    grid = call(schema, "POST /stop/{stream_id}", path_parameters={"stream_id": stream_id})
    assert grid.headers["content-type"] == ["image/jpeg"] and grid.content[:2] == b"\xff\xd8"
    smaller = call(
        schema,
        "POST /stop/{stream_id}",
        path_parameters={"stream_id": stream_id},
        query={"grid_cols": 1, "tile_size": 32},
    )
    assert smaller.content[:2] == b"\xff\xd8"
    stopped = call(schema, "POST /stop")
    assert stopped.json()["results"].get(other) is not None
    call(schema, "POST /status/{stream_id}", path_parameters={"stream_id": stream_id})


def test_the_document_names_every_input_and_no_422(schema: BaseSchema) -> None:
    raw: dict[str, Any] = schema.raw_schema
    start_op = raw["paths"]["/start"]["post"]
    names = {p["name"] for p in start_op["parameters"]}
    assert names == {
        "capture_interval",
        "top_k",
        "rtsp_transport",
        "tls_verify",
        "grid_cols",
        "tile_width",
        "tile_height",
        "tile_size",
    }
    assert set(start_op["requestBody"]["content"]) == {
        "application/x-www-form-urlencoded",
        "application/json",
    }
    stop_op = raw["paths"]["/stop/{stream_id}"]["post"]
    assert set(stop_op["responses"]["200"]["content"]) == {"image/jpeg"}
    for path in raw["paths"].values():
        for operation in path.values():
            assert "422" not in operation["responses"]
            for code, response in operation["responses"].items():
                if code != "200":
                    assert set(response["content"]) == {"text/plain"}, (code, response)
    assert "HTTPValidationError" not in str(raw)


ASSET_RE = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'"\s)>]+)""", re.IGNORECASE)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_everything_from_the_server(server: Server, page: str) -> None:
    with server.client() as client:
        html = client.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assert "cdn." not in html.text
        assert "https://" not in html.text and "http://" not in html.text
        assets: list[str] = [a for a in ASSET_RE.findall(html.text) if a.startswith("/")]
        assert any(a.endswith(".js") for a in assets), assets
        for asset in assets:
            loaded = client.get(asset)
            assert loaded.status_code == 200, asset
            assert loaded.content, asset
        assert client.get("/openapi.json").status_code == 200
