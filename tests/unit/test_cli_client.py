"""The CLI client's pure parts: formatting, parameters, the server URL."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from rich.console import Console

from streamgrid.cli_client import (
    StreamRow,
    details_table,
    format_age,
    format_duration,
    format_size,
    not_stopped,
    start_params,
    state_text,
    stream_row,
    streams_table,
)
from streamgrid.client import check_server_url, one_line, stream_path
from streamgrid.core.jpeg import jpeg_size


def rendered(renderable: object, width: int = 200) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0.0s"),
        (12.44, "12.4s"),
        (59.94, "59.9s"),
        (60, "1m00s"),
        (185, "3m05s"),
        (7380, "2h03m"),
        (93600, "1d02h"),
        (-3, "0.0s"),
    ],
)
def test_durations_are_short_and_as_precise_as_useful(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_ages_never_read_as_the_future_and_unknown_is_a_dash() -> None:
    assert format_age(100.0, 100.4) == "0.4s ago"
    assert format_age(101.0, 100.0) == "0.0s ago"  # the server's clock a little ahead
    assert format_age(None, 100.0) == "-"


def test_a_state_carries_its_reason() -> None:
    assert state_text("Active") == "Active"
    assert state_text("Reconnecting", "Connection refused") == "Reconnecting (Connection refused)"


def test_sizes() -> None:
    assert format_size(512) == "512 B"
    assert format_size(34 * 1024) == "34 KiB"
    assert format_size(3 * 1024 * 1024) == "3.0 MiB"


def test_jpeg_size_reads_the_frame_header_of_a_real_jpeg() -> None:
    ok, encoded = cv2.imencode(".jpg", np.zeros((120, 340, 3), np.uint8))
    assert ok
    assert jpeg_size(encoded.tobytes()) == (340, 120)
    ok, progressive = cv2.imencode(
        ".jpg", np.zeros((30, 50, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    )
    assert jpeg_size(progressive.tobytes()) == (50, 30)
    assert jpeg_size(b"No frames captured") is None
    assert jpeg_size(encoded.tobytes()[:20]) is None  # cut short: no frame header


def test_start_params_send_only_what_was_given() -> None:
    assert start_params() == {}
    assert start_params(
        interval=0.5,
        top_k=4,
        transport="udp",
        tls_verify=False,
        geometry={"grid_cols": 2, "tile_size": None, "tile_width": 160, "tile_height": None},
    ) == {
        "capture_interval": "0.5",
        "top_k": "4",
        "rtsp_transport": "udp",
        "tls_verify": "false",
        "grid_cols": "2",
        "tile_width": "160",
    }


def test_a_row_takes_details_over_the_list_entry() -> None:
    entry = {"frames_captured": 3, "url": "rtsp://h/x", "running_time": 4.04, "state": "Active"}
    row = stream_row("ab", entry, None, now=50.0)
    assert row == StreamRow("ab", "Active", "3", "4.0s", "-", "rtsp://h/x")
    details = {
        **entry,
        "state": "Reconnecting",
        "reason": "timed out after 5.0 s",
        "frames_captured": 5,
        "last_frame_at": 48.0,
    }
    row = stream_row("ab", entry, details, now=50.0)
    assert row.state == "Reconnecting (timed out after 5.0 s)"
    assert (row.frames, row.last_sample) == ("5", "2.0s ago")


def test_a_table_shows_what_the_server_sent_as_text_never_as_markup() -> None:
    rows = [StreamRow("ab12", "Active", "7", "7.0s", "0.1s ago", "rtsp://h/[bold]x[/bold]")]
    text = rendered(streams_table(rows))
    header = text.splitlines()[0].split()
    assert header == ["ID", "STATE", "FRAMES", "RUNNING", "LAST", "SAMPLE", "URL"]
    assert "rtsp://h/[bold]x[/bold]" in text
    assert "LAST SAMPLE" not in rendered(streams_table(rows, with_last_sample=False))


def test_a_stopping_stream_shows_a_spinner() -> None:
    rows = [StreamRow("ab12", "Stopping", "7", "7.0s", "-", "rtsp://h/x")]
    line = rendered(streams_table(rows)).splitlines()[2]
    assert "Stopping" in line
    assert line.split()[1] not in ("Stopping", "")  # a spinner frame before the word


def test_details_table() -> None:
    details = {
        "stream_id": "ab12",
        "url": "rtsp://u:***@h/x",
        "state": "Active",
        "reason": "",
        "frames_captured": 12,
        "kept": 9,
        "running_time": 12.4,
        "last_frame_at": 99.5,
        "capture_interval": 1.0,
        "top_k": 9,
    }
    text = rendered(details_table(details, now=100.0))
    for expected in ("ab12", "rtsp://u:***@h/x", "12 (kept 9)", "12.4s", "0.5s ago", "1s"):
        assert expected in text


def test_not_stopped_lists_the_streams_a_stop_all_left_running() -> None:
    results = {"b": "Store unavailable: disk full", "a": "Stopped", "c": "Stopped"}
    assert not_stopped(results) == ["b"]
    assert not_stopped({"a": "Stopped"}) == []


def test_server_urls_are_checked_and_never_carry_credentials() -> None:
    assert check_server_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert check_server_url(" https://sg.example/api/ ") == "https://sg.example/api"
    for bad in ("127.0.0.1:8080", "ftp://h", "http://", "http://u:secret@h"):
        with pytest.raises(ValueError) as err:
            check_server_url(bad)
        assert "secret" not in str(err.value)


def test_ids_stay_one_path_segment_and_reasons_one_line() -> None:
    assert stream_path("/stop", "a/../b c") == "/stop/a%2F..%2Fb%20c"
    assert one_line("Invalid RTSP URL:\n  bad\tport ") == "Invalid RTSP URL: bad port"
    assert one_line("x" * 400, limit=10) == "xxxxxxx..."
