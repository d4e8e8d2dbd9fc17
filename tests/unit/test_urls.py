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


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://[::1]:8554/live",
        "rtsp://cam.local./live",
        "rtsp://bücher.example/live",
        "rtsp://my_cam.lan/live",
        "rtsp://" + "a" * 63 + ".example/live",
    ],
)
def test_valid_hosts(url: str) -> None:
    assert validate_rtsp_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("rtsp://a..b:554/cam", "empty label"),
        ("rtsp://.cam/x", "empty label"),
        ("rtsp://" + "a" * 64 + ".example/cam", "longer than 63"),
        ("rtsp://" + ".".join(["a" * 60] * 5) + "/cam", "longer than 253"),
        ("rtsp://ca%6d.example/x", "characters not allowed"),
        ("rtsp://-cam.example/x", "characters not allowed"),
        ("rtsp://\u2488.example/x", "host"),
        ("rtsp://999.0.0.1/x", "IPv4"),
        ("rtsp://[zz::]/x", "IPv6|malformed"),
    ],
)
def test_invalid_hosts_say_why_in_one_line(url: str, reason: str) -> None:
    with pytest.raises(InvalidURLError, match=reason) as raised:
        validate_rtsp_url(url)
    assert "\n" not in str(raised.value) and str(raised.value).startswith(("invalid host", "mal"))
