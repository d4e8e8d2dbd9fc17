from __future__ import annotations

import pytest

from streamgrid.core.geometry import GridGeometry
from streamgrid.gateway.requests import BadRequest, json_depth, parse_geometry, parse_start

URL = "rtsp://127.0.0.1/x"


def test_defaults() -> None:
    request = parse_start(URL, {})
    assert (request.capture_interval, request.top_k, request.rtsp_transport) == (1.0, 9, "tcp")
    assert request.geometry == GridGeometry()


def test_decimal_intervals_and_options_are_accepted() -> None:
    request = parse_start(URL, {"capture_interval": "0.5", "top_k": "4", "rtsp_transport": "UDP"})
    assert (request.capture_interval, request.top_k, request.rtsp_transport) == (0.5, 4, "udp")


@pytest.mark.parametrize(
    ("url", "params", "message"),
    [
        (None, {}, "Missing RTSP URL"),
        ("   ", {}, "Missing RTSP URL"),
        ("http://x/y", {}, "Invalid RTSP URL: scheme"),
        (URL, {"capture_interval": "abc"}, "Invalid capture_interval"),
        (URL, {"capture_interval": "0"}, "Invalid capture_interval"),
        (URL, {"capture_interval": "-5"}, "Invalid capture_interval"),
        (URL, {"capture_interval": "nan"}, "Invalid capture_interval"),
        (URL, {"capture_interval": "inf"}, "Invalid capture_interval"),
        (URL, {"capture_interval": "86401"}, "Invalid capture_interval"),
        (URL, {"top_k": "0"}, "Invalid top_k"),
        (URL, {"top_k": "2.5"}, "Invalid top_k"),
        (URL, {"top_k": "101"}, "Invalid top_k"),
        (URL, {"rtsp_transport": "http"}, "Invalid rtsp_transport"),
        (URL, {"tls_verify": "maybe"}, "Invalid tls_verify"),
        (URL, {"tile_width": "8"}, "Invalid tile_width"),
        (URL, {"grid_cols": "0"}, "Invalid grid_cols"),
    ],
)
def test_bad_input_has_a_one_line_reason(
    url: str | None, params: dict[str, str], message: str
) -> None:
    with pytest.raises(BadRequest) as info:
        parse_start(url, params)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "verify"), [(None, True), ("", True), ("true", True), ("0", False), ("False", False)]
)
def test_certificates_are_checked_unless_a_stream_says_otherwise(
    raw: str | None, verify: bool
) -> None:
    params = {} if raw is None else {"tls_verify": raw}
    assert parse_start("rtsps://127.0.0.1/x", params).tls_verify is verify


def test_tile_size_sets_both_sides_and_explicit_sides_win() -> None:

    assert parse_geometry({"tile_size": "200"}) == GridGeometry(None, 200, 200)
    assert parse_geometry({"tile_size": "200", "tile_height": "100"}) == GridGeometry(
        None, 200, 100
    )


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[[{{{{"}', 1),  # brackets inside strings do not count
        (b'{"a": "\\"[[["}', 1),  # nor after an escaped quote
        (b"[" * 100 + b"]" * 100, 100),
        (b'"plain"', 0),
    ],
)
def test_json_depth_is_counted_without_parsing(text: bytes, depth: int) -> None:
    assert json_depth(text) == depth
