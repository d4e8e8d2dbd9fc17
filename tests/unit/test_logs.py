from __future__ import annotations

import json
import logging

import pytest

from streamgrid.core import logs
from streamgrid.core.logs import JsonFormatter, register_secret


def format_record(message: str, **fields: object) -> dict[str, object]:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)
    record.fields = fields
    line = JsonFormatter("test").format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_one_json_object_per_event_with_fields() -> None:
    event = format_record("stream.started", stream_id="abc", interval=1.0)
    assert event["event"] == "stream.started"
    assert event["stream_id"] == "abc"
    assert event["level"] == "info"


def test_credentials_are_masked_in_every_field() -> None:
    event = format_record("oops", error="open rtsp://u:letmein@cam/x failed")
    assert "letmein" not in json.dumps(event)


def test_registered_secrets_are_masked_even_out_of_context() -> None:
    register_secret("Zq9-registered-pw")
    event = format_record("library said Zq9-registered-pw")
    assert "Zq9-registered-pw" not in json.dumps(event)


def test_a_registered_secret_equal_to_a_key_or_field_rewrites_neither(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A password of "info", "event" or "stream_id" masks values that contain
    it, never the keys or the formatter's own fields."""
    monkeypatch.setattr(logs, "_known_secrets", set())  # these words for this test only
    register_secret("info", "event", "stream_id")
    event = format_record("worker said info", stream_id="abc", note="event happened")
    assert event["level"] == "info"
    assert set(event) >= {"ts", "level", "component", "logger", "event", "stream_id", "note"}
    assert event["stream_id"] == "abc"
    assert event["event"] == "worker said ***"
    assert event["note"] == "*** happened"


def test_secret_names_and_nested_values_are_masked() -> None:
    event = format_record(
        "open failed",
        url="rtsp://h/x?access_token=Tk-1&ch=1",
        path_style="rtsp://h/user=admin&password=Dh-2&channel=1",
        nested={"hops": ["rtsp://h/x?apikey=Ak-3", 5], "pw": "rtsp://h/y?pw=Pw-4"},
        count=3,
    )
    text = json.dumps(event)
    for secret in ("Tk-1", "Dh-2", "Ak-3", "Pw-4"):
        assert secret not in text
    assert event["count"] == 3
    assert event["nested"] == {"hops": ["rtsp://h/x?apikey=***", 5], "pw": "rtsp://h/y?pw=***"}
