"""The OpenAPI document is written from the query models: each parameter's
bounds and default are the ones the server checks (core/models.py,
core/geometry.py), and a bad value answers the same reason through the app as
through the parser."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from streamgrid.core.geometry import MAX_CELLS, MAX_TILE, MIN_TILE
from streamgrid.core.models import (
    INTERVAL_DEFAULT,
    INTERVAL_MAX,
    INTERVAL_MIN,
    TOP_K_DEFAULT,
    TOP_K_MAX,
    TOP_K_MIN,
    TRANSPORTS,
)
from streamgrid.gateway.app import create_app
from streamgrid.gateway.auth import Authenticator, StaticTokens
from streamgrid.gateway.listing import MAX_LIMIT, MAX_TOKEN
from streamgrid.gateway.requests import BadRequest, parse_start

GEOMETRY = {
    "grid_cols": {"type": "integer", "minimum": 1, "maximum": MAX_CELLS},
    **{
        name: {"type": "integer", "minimum": MIN_TILE, "maximum": MAX_TILE}
        for name in ("tile_width", "tile_height", "tile_size")
    },
}
START = {
    "capture_interval": {
        "type": "number",
        "minimum": INTERVAL_MIN,
        "maximum": INTERVAL_MAX,
        "default": INTERVAL_DEFAULT,
    },
    "top_k": {
        "type": "integer",
        "minimum": TOP_K_MIN,
        "maximum": TOP_K_MAX,
        "default": TOP_K_DEFAULT,
    },
    "rtsp_transport": {"type": "string", "enum": list(TRANSPORTS), "default": "tcp"},
    "tls_verify": {"type": "boolean", "default": True},
    **GEOMETRY,
}
LIST = {
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    "continue": {"type": "string", "maxLength": MAX_TOKEN},
}
KEYS = ("type", "minimum", "maximum", "maxLength", "enum", "default")


class NoStreams:
    """A backend that is never reached: every request here is refused first."""

    def close(self) -> None:
        pass


def document(authenticated: bool = False) -> dict[str, Any]:
    authenticator = Authenticator([StaticTokens(["t"])]) if authenticated else None
    return create_app(lambda: None, authenticator).openapi()  # type: ignore[arg-type,return-value]


def query_parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        p["name"]: {k: v for k, v in p["schema"].items() if k in KEYS}
        for p in operation["parameters"]
        if p["in"] == "query" and not p["required"]
    }


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [("/start", "post", START), ("/stop/{stream_id}", "post", GEOMETRY), ("/list", "get", LIST)],
)
def test_query_parameters_carry_the_bounds_and_defaults_checked(
    path: str, method: str, expected: dict[str, dict[str, Any]]
) -> None:
    assert query_parameters(document()["paths"][path][method]) == expected


def test_with_a_token_every_operation_but_healthz_documents_the_bearer_scheme() -> None:
    schema = document(authenticated=True)
    assert schema["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer"}
    }
    for path, item in schema["paths"].items():
        for operation in item.values():
            if path == "/healthz":
                assert "security" not in operation
                continue
            assert operation["security"] == [{"bearer": []}], path
            assert {"401", "403", "503"} <= set(operation["responses"]), path
    assert "securitySchemes" not in document().get("components", {})


@pytest.mark.parametrize(
    "query",
    [
        {"capture_interval": "soon"},
        {"capture_interval": "nan"},
        {"top_k": "2.5"},
        {"rtsp_transport": "  "},
        {"tls_verify": "maybe"},
        {"grid_cols": "0", "top_k": "0"},  # the first bad one, in the parser's order
        {"top_k": "100", "tile_size": "2000"},
    ],
)
def test_the_app_answers_a_bad_query_as_the_parser_does(query: dict[str, str]) -> None:
    url = "rtsp://127.0.0.1:9/x"
    with pytest.raises(BadRequest) as parsed:
        parse_start(url, query)
    app = create_app(NoStreams)  # type: ignore[arg-type]
    with TestClient(app, base_url="http://127.0.0.1") as client:
        answer = client.post("/start", params=query, data={"rtsp_url": url})
    assert (answer.status_code, answer.text) == (400, str(parsed.value))
    assert answer.headers["content-type"].startswith("text/plain")
