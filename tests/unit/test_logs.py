from __future__ import annotations

import json
import logging

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
