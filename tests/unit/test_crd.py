"""The VideoStream CRD against the Python it fronts: the same bounds, the same
secret parameter names, only names every component takes, and a description
on every field (what `kubectl explain` shows).

The CRD's CEL regexes are RE2; the ones here use only syntax RE2 and Python's
``re`` read alike, so ``re.search`` (CEL's ``matches`` is a search) evaluates
them as the API server does. tests/e2e/test_cluster.py checks the real one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamgrid.capture.settings import CaptureSettings
from streamgrid.core.geometry import MAX_CELLS, MAX_TILE, MIN_TILE, GridGeometry
from streamgrid.core.models import (
    INTERVAL_DEFAULT,
    INTERVAL_MAX,
    INTERVAL_MIN,
    TOP_K_DEFAULT,
    TOP_K_MAX,
    TOP_K_MIN,
    TRANSPORTS,
    is_valid_stream_id,
)
from streamgrid.core.urls import (
    SECRET_PARAMS,
    has_secret_params,
    split_credentials,
    validate_rtsp_url,
)

CRD = Path(__file__).parents[2] / "charts/streamgrid/crds/videostreams.streamgrid.io.yaml"
Schema = dict[str, Any]


def schema() -> Schema:
    crd = yaml.safe_load(CRD.read_text())
    found: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return found


def spec_schema() -> Schema:
    found: Schema = schema()["properties"]["spec"]
    return found


def cel_patterns(node: Schema) -> list[tuple[bool, str]]:
    """(refuses on match, regex) of each `[!]self...matches('...')` rule of a node."""
    found = []
    for rule in node.get("x-kubernetes-validations", []):
        match = re.fullmatch(r"(!?)self(?:\.metadata\.name)?\.matches\(r?'(.*)'\)", rule["rule"])
        if match:
            found.append((match[1] == "!", match[2]))
    return found


def crd_accepts_url(url: str) -> bool:
    url_schema = spec_schema()["properties"]["source"]["properties"]["url"]
    if len(url) > url_schema["maxLength"]:
        return False
    return all(
        bool(re.search(regex, url)) != refuses for refuses, regex in cel_patterns(url_schema)
    )


def crd_accepts_name(name: str) -> bool:
    return len(name) <= 63 and all(
        bool(re.search(regex, name)) != refuses for refuses, regex in cel_patterns(schema())
    )


def walk(node: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    for key, child in (node.get("properties") or {}).items():
        yield f"{path}.{key}", child
        yield from walk(child, f"{path}.{key}")
    if "items" in node:
        yield f"{path}[]", node["items"]
        yield from walk(node["items"], f"{path}[]")


def test_every_field_has_a_description() -> None:
    root = schema()
    assert root.get("description")
    # metadata: the API server forbids one, and explain shows ObjectMeta's.
    missing = [
        path
        for path, node in walk(root, "vstream")
        if path != "vstream.metadata" and not node.get("description")
    ]
    assert missing == []


def test_the_bounds_are_the_engines() -> None:
    spec = spec_schema()["properties"]
    interval = spec["captureInterval"]
    assert interval["default"] == INTERVAL_DEFAULT
    # Only CEL bounds it (see the CRD): the rule and its message say the real ones.
    (rule,) = interval["x-kubernetes-validations"]
    assert rule["rule"] == f"self >= {INTERVAL_MIN} && self <= {INTERVAL_MAX}"
    assert f"between {INTERVAL_MIN:g} and {INTERVAL_MAX:g} seconds" in rule["message"]
    assert "minimum" not in interval and "maximum" not in interval
    top_k = spec["topK"]
    assert (top_k["minimum"], top_k["maximum"], top_k["default"]) == (
        TOP_K_MIN,
        TOP_K_MAX,
        TOP_K_DEFAULT,
    )
    grid = spec["grid"]["properties"]
    assert (grid["columns"]["minimum"], grid["columns"]["maximum"]) == (1, MAX_CELLS)
    default = GridGeometry()
    for key, value in (("tileWidth", default.tile_width), ("tileHeight", default.tile_height)):
        assert (grid[key]["minimum"], grid[key]["maximum"], grid[key]["default"]) == (
            MIN_TILE,
            MAX_TILE,
            value,
        )
    assert tuple(spec["source"]["properties"]["transport"]["enum"]) == TRANSPORTS


def test_the_secret_parameter_names_are_the_maskers() -> None:
    url_schema = spec_schema()["properties"]["source"]["properties"]["url"]
    lists = [
        set(m.split("|"))
        for _, regex in cel_patterns(url_schema)
        for m in re.findall(r"\(((?:[a-z_]+\|)+[a-z_]+)\)", regex)
    ]
    assert len(lists) == 2
    assert all(names == set(SECRET_PARAMS) for names in lists)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://user:hunter2@cam/x",
        "rtsp://user@cam/x",
        "rtsp://user:p?w@cam/x",
        "rtsp://cam/x?token=abc123",
        "rtsp://cam/x?ch=1&Password=abc",
        "rtsp://cam/x?ch=1;access_token=t",
        "rtsp://cam/x?token=/abc",
        "rtsp://cam/x#sig=abc",
        "rtsp://cam:554/user=admin&password=Pw1&channel=1",
        "rtsp://cam:554/cam/realmonitor/pwd=Pw1/stream",
        "rtsp://cam/user=admin&password=****&channel=1",
        "rtsp://cam/user=admin&password=**x",
        "http://cam/x",
        "rtsp://",
        "rtsp://cam /x",
        "rtsp://cam/" + "x" * 2048,
    ],
)
def test_the_crd_refuses(url: str) -> None:
    assert not crd_accepts_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://cam/x",
        "rtsps://cam:322/live/ch1?ch=1&subtype=0",
        "rtsp://[fe80::1]:554/x",
        "rtsp://cam/x?monkey=1&tokens=2",  # not secret names
        "rtsp://cam/user=admin&password=***&channel=1",  # the gateway's masked path
        "rtsp://cam/user=admin&password=***/live",
        "rtsp://cam/x?password=",  # no value, no secret
    ],
)
def test_the_crd_accepts(url: str) -> None:
    assert crd_accepts_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://u:p%40ss@cam/live",
        "rtsp://cam/live?ch=1&password=x",
        "rtsp://cam/live?access_token=t;ch=1&apikey=k",
        "rtsp://cam:554/user=admin&password=Pw1&channel=1",
        "rtsp://admin:pw@cam:554/user=admin&password=Pw1/live?token=t#sig=s",
    ],
)
def test_what_the_gateway_writes_into_the_spec_is_accepted(url: str) -> None:
    """The gateway moves credentials to a Secret: what it leaves in the spec passes."""
    validate_rtsp_url(url)
    assert has_secret_params(url) or "@" in url
    assert not crd_accepts_url(url)
    clean, secret = split_credentials(url)
    assert secret and crd_accepts_url(clean)


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("cam-1", True),
        ("0123456789abcdef", True),  # the gateway's names
        ("a" * 63, True),
        ("a" * 64, False),
        ("cam.lobby.v2", False),  # dots: the worker refused them and exited 2
        ("cam-", False),
        ("-cam", False),
        ("Cam", False),
    ],
)
def test_every_name_the_crd_accepts_the_worker_accepts(name: str, accepted: bool) -> None:
    assert crd_accepts_name(name) is accepted
    if accepted:
        assert is_valid_stream_id(name)
        CaptureSettings(stream_id=name, source_url="rtsp://cam/x")


def test_the_printer_columns_show_the_reason() -> None:
    crd = yaml.safe_load(CRD.read_text())
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Reason"]["jsonPath"] == ".status.reason"
    assert columns["Reason"].get("priority", 0) == 0
