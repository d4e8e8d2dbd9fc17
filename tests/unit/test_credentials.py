"""Credentials leave the URL for a Secret, and come back only inside the worker."""

from __future__ import annotations

import pytest

from streamgrid.capture.settings import CaptureSettings
from streamgrid.core.urls import split_credentials


@pytest.mark.parametrize(
    ("url", "clean", "data"),
    [
        ("rtsp://cam:554/live", "rtsp://cam:554/live", {}),
        ("rtsp://cam", "rtsp://cam/", {}),
        ("rtsp://u:p%40ss@cam/live", "rtsp://cam/live", {"username": "u", "password": "p@ss"}),
        ("rtsp://u@cam/live", "rtsp://cam/live", {"username": "u"}),
        (
            "rtsp://cam/live?ch=1&password=x",
            "rtsp://cam/live?ch=1",
            {"url": "rtsp://cam/live?ch=1&password=x"},
        ),
        (
            "rtsp://cam/live?access_token=t;ch=1&apikey=k",
            "rtsp://cam/live?ch=1",
            {"url": "rtsp://cam/live?access_token=t;ch=1&apikey=k"},
        ),
        # Dahua-style: the whole URL to the Secret, the spec's path masked.
        (
            "rtsp://cam:554/user=admin&password=Pw1&channel=1",
            "rtsp://cam:554/user=admin&password=***&channel=1",
            {"url": "rtsp://cam:554/user=admin&password=Pw1&channel=1"},
        ),
    ],
)
def test_split_credentials(url: str, clean: str, data: dict[str, str]) -> None:
    assert split_credentials(url) == (clean, data)


def settings(**values: str) -> CaptureSettings:
    return CaptureSettings(**{"stream_id": "s", "source_url": "rtsp://cam/x", **values})


def test_the_worker_puts_the_secret_back_into_the_url() -> None:
    assert settings().camera_url() == "rtsp://cam/x"
    assert settings(source_username="u", source_password="p@ss").camera_url() == (
        "rtsp://u:p%40ss@cam/x"
    )
    assert settings(source_username="u").camera_url() == "rtsp://u@cam/x"
    assert settings(source_full_url="rtsp://a:b@other/y").camera_url() == "rtsp://a:b@other/y"
