from __future__ import annotations

import pytest

from streamgrid.core.urls import (
    SECRET_PARAMS,
    InvalidURLError,
    drop_secret_params,
    has_secret_params,
    mask_secrets,
    mask_url,
    url_secrets,
    validate_rtsp_url,
)


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
        ("rtsp://host/x?access_token=T0k&ch=1", "rtsp://host/x?access_token=***&ch=1"),
        ("rtsp://host/x?apikey=K3y&api_key=K4y", "rtsp://host/x?apikey=***&api_key=***"),
        ("rtsp://host/x?pw=s3&sig=abc;key=k", "rtsp://host/x?pw=***&sig=***;key=***"),
        ("rtsp://host/x?PassWord=a%20b&ch=a%20b", "rtsp://host/x?PassWord=***&ch=a%20b"),
        ("rtsp://host/x?pass%77ord=zz", "rtsp://host/x?pass%77ord=***"),
        # Dahua-style: the credentials are in the path.
        (
            "rtsp://h:554/user=admin&password=Dahua-pw&channel=1&stream=0.sdp",
            "rtsp://h:554/user=admin&password=***&channel=1&stream=0.sdp",
        ),
        ("rtsp://h/cam/pwd=x1;auth=x2/live", "rtsp://h/cam/pwd=***;auth=***/live"),
        # Names that only end like a secret one are not masked.
        ("rtsp://h/x?monkey=1&passes=2&tokens=3", "rtsp://h/x?monkey=1&passes=2&tokens=3"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize("name", sorted(SECRET_PARAMS))
def test_every_secret_name_is_masked_in_urls_and_text(name: str) -> None:
    secret = "Sec-val-42"
    for url in (f"rtsp://h/x?a=1&{name}={secret}", f"rtsp://h/user=u&{name}={secret}&c=1"):
        assert secret not in mask_url(url)
        assert secret not in mask_secrets(f"could not open {url}: refused")
        assert secret in url_secrets(url)
        assert has_secret_params(url)
    assert secret not in mask_secrets(f"{name}={secret}")


def test_url_secrets_and_has_secret_params() -> None:
    assert url_secrets("rtsp://u:p%40ss@h/x?token=a%2Fb") == ["p%40ss", "p@ss", "a%2Fb", "a/b"]
    assert url_secrets("rtsp://h/x") == []
    assert not has_secret_params("rtsp://u:p@h/x?ch=1")
    assert has_secret_params("rtsp://h/user=admin&password=x&channel=1")


def test_drop_secret_params_keeps_the_rest_as_written() -> None:
    assert drop_secret_params("ch=1&password=x;Token=y&q=a%20b") == "ch=1&q=a%20b"
    assert drop_secret_params("") == ""


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


def test_a_query_secret_holding_a_slash_is_masked_whole() -> None:
    url = "rtsp://cam/live?password=se/cret&channel=1"
    assert mask_url(url) == "rtsp://cam/live?password=***&channel=1"
    assert url_secrets(url) == ["se/cret"]


def test_a_password_holding_an_at_sign_is_masked_whole_in_free_text() -> None:
    text = "cannot open rtsp://admin:p@ss@cam/live"
    assert mask_secrets(text, ["p@ss"]) == "cannot open rtsp://admin:***@cam/live"
    assert mask_secrets(text) == "cannot open rtsp://admin:***@cam/live"  # unregistered too
