"""GET /list's encoding and pages (gateway/listing.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamgrid.core.models import StreamState
from streamgrid.gateway.backend import StreamInfo
from streamgrid.gateway.listing import (
    decode_token,
    encode_list,
    encode_token,
    entry_of,
    page_params,
    select,
)
from streamgrid.gateway.requests import BadRequest


def info(stream_id: str, frames: int = 3, url: str = 'rtsp://cam/"odd"\\path') -> StreamInfo:
    return StreamInfo(stream_id, url, StreamState.ACTIVE, frames, 12.34, 1000.0)


def test_the_body_is_the_specs_shape_with_the_same_values_as_list_entry() -> None:
    infos = [info("b"), info("a", frames=0, url="rtsp://x/\u00e9")]
    body = json.loads(encode_list([entry_of(i) for i in infos], now=5000.0))
    assert body == {"active_streams": {i.stream_id: i.list_entry() for i in infos}}
    assert list(body["active_streams"]["b"]) == ["frames_captured", "url", "running_time", "state"]


def test_a_live_entry_runs_with_the_clock_and_a_finished_one_does_not() -> None:
    live = entry_of(info("a"), live=True)
    assert json.loads("{" + live.render(1060.0) + "}")["a"]["running_time"] == 60.0
    frozen = entry_of(info("a"))
    assert json.loads("{" + frozen.render(9999.0) + "}")["a"]["running_time"] == 12.3


def test_pages_cover_every_stream_once_in_id_order() -> None:
    entries = [entry_of(info(f"{n:04x}")) for n in range(25)][::-1]
    seen: list[str] = []
    after: str | None = None
    while True:
        page, token = select(entries, 10, after)
        seen += [e.stream_id for e in page]
        if token is None:
            break
        after = decode_token(token)
    assert seen == sorted(e.stream_id for e in entries)
    everything, token = select(entries, None, None)
    assert token is None and everything == entries  # no limit: the spec's answer


def test_the_last_page_has_no_continue() -> None:
    entries = [entry_of(info("a")), entry_of(info("b"))]
    page, token = select(entries, 2, None)
    assert token is None and len(page) == 2
    body = json.loads(encode_list(page, 0.0, token))
    assert "continue" not in body
    page, token = select(entries, 1, None)
    assert json.loads(encode_list(page, 0.0, token))["continue"] == encode_token("a")


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "10001"},
        {"limit": "ten"},
        {"limit": "\u0661\u0662"},  # Arabic-Indic digits: isdigit() but not ASCII
        {"limit": "1e3"},
        {"continue": "%%%"},
        {"continue": "x" * 600},
        {"continue": "_w"},  # decodes to a byte that is not UTF-8
    ],
)
def test_bad_page_parameters_are_a_400_with_a_reason(query: dict[str, str]) -> None:
    with pytest.raises(BadRequest) as raised:
        page_params(query)
    assert str(raised.value).startswith("Invalid request: ")


def test_good_page_parameters() -> None:
    assert page_params({}) == (None, None)
    assert page_params({"limit": "50", "continue": encode_token("abc")}) == (50, "abc")


def test_a_cluster_streams_entry_matches_its_info_and_a_stopped_one_has_none() -> None:
    from streamgrid.gateway.kube import info_of, list_entry_of

    stream: dict[str, Any] = {
        "metadata": {"name": "cam-1", "resourceVersion": "7"},
        "spec": {"source": {"url": "rtsp://u:secret@cam/x"}, "state": "Running"},
        "status": {
            "state": "Active",
            "framesCaptured": 41,
            "startedAt": "2026-11-29T10:00:00Z",
        },
    }
    entry = list_entry_of(stream)
    assert entry is not None
    now = info_of(stream).started_at + 90.0
    listed = json.loads(encode_list([entry], now))["active_streams"]["cam-1"]
    assert listed == {
        "frames_captured": 41,
        "url": info_of(stream).url,
        "running_time": 90.0,
        "state": "Active",
    }
    assert "secret" not in listed["url"]
    stream["status"]["state"] = "Stopped"
    assert list_entry_of(stream) is None
