from __future__ import annotations

import pytest

from streamgrid.core.urls import InvalidURLError, mask_secrets, mask_url, validate_rtsp_url


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://127.0.0.1:8554/live",
        "rtsps://cam.example/stream?channel=1",
        "rtsp://user:p%40ss@10.0.0.5/h264",
        "  rtsp://host/x  ",
        "RTSP://HOST/x",
    ],
)
def test_valid_urls(url: str) -> None:
    assert validate_rtsp_url(url) == url.strip()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("http://host/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("rtsp:///path", "no host"),
        ("rtsp://host:99999/x", "malformed"),
        ("rtsp://host:0/x", "port"),
        ("rtsp://ho st/x", "whitespace"),
        ("rtsp://host/\x00", "control"),
        ("rtsp://host/" + "a" * 3000, "longer"),
    ],
)
def test_invalid_urls_say_why(url: str, reason: str) -> None:
    with pytest.raises(InvalidURLError, match=reason):
        validate_rtsp_url(url)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rtsp://user:pass@host:554/x", "rtsp://user:***@host:554/x"),
        ("rtsp://user@host/x", "rtsp://user@host/x"),
        ("rtsp://host/x", "rtsp://host/x"),
        ("rtsp://a:b@host/x?password=zz&ch=1", "rtsp://a:***@host/x?password=***&ch=1"),
        ("rtsp://host/x?user=admin&pwd=hunter2", "rtsp://host/x?user=admin&pwd=***"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_secrets_in_free_text() -> None:
    text = "[Errno 1] Server returned 401: 'rtsp://viewer:hunter2@127.0.0.1:8554/gray'"
    assert "hunter2" not in mask_secrets(text)
    assert "rtsp://viewer:***@127.0.0.1:8554/gray" in mask_secrets(text)
    assert mask_secrets("token is abc123def", secrets=["abc123def"]) == "token is ***"
