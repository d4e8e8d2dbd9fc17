"""The browser policy (gateway/browsers.py): which Host names the server
answers to, and which requests from web pages may reach the routes."""

from __future__ import annotations

import pytest

from streamgrid.gateway.browsers import (
    BrowserPolicy,
    InvalidOrigin,
    normal_origin,
    split_host,
)

POLICY = BrowserPolicy.build(
    ["gateway.example.com", "*.cams.example.org"],
    ["http://app.example.com:3000"],
    own_names=["mybox"],
)
OWN = "127.0.0.1:8080"


def refused(
    method: str = "POST", host: str | None = OWN, scheme: str = "http", **headers: str
) -> int | None:
    sent = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    if host is not None:
        sent["host"] = host
    refusal = POLICY.refusal(method, sent, scheme)
    return None if refusal is None else refusal.status


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", "8080")),
        ("LocalHost", ("localhost", "")),
        ("localhost.:8080", ("localhost", "8080")),
        ("[::1]:8080", ("::1", "8080")),
        ("[::1]", ("::1", "")),
        ("evil.example", ("evil.example", "")),
        ("[::1", None),
        ("a:b", None),
        ("user@host", None),
        ("", None),
        ("host/path", None),
    ],
)
def test_a_host_header_is_split_into_name_and_port(
    value: str, expected: tuple[str, str] | None
) -> None:
    assert split_host(value) == expected


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8080",
        "10.96.0.12",
        "[::1]:8080",
        "[fe80::1]",
        "localhost:8080",
        "LOCALHOST",
        "mybox:8080",
        "gateway.example.com",
        "gateway.example.com.",
        "a.cams.example.org",
        "b.a.cams.example.org:443",
    ],
)
def test_ip_literals_localhost_the_machine_and_allowed_names_are_served(host: str) -> None:
    assert refused("GET", host) is None
    assert refused("POST", host) is None  # a client with no Origin: curl, the CLI


@pytest.mark.parametrize(
    "host",
    [
        "rebind.evil.example:8080",
        "evil.example",
        "cams.example.org",  # a "*." pattern is not its apex
        "example.com",
        "gateway.example.com.evil.example",
        "localhost.evil.example",
        "2130706433",  # a browser sends the dotted form; this is a name
        "[::1",
        "bad host",
    ],
)
def test_any_other_host_is_misdirected_on_every_method(host: str) -> None:
    for method in ("GET", "HEAD", "POST", "OPTIONS"):
        assert refused(method, host) == 421


def test_the_reason_names_the_setting_and_is_one_line() -> None:
    refusal = POLICY.refusal("GET", {"host": "evil.example\r\nx: y"}, "http")
    assert refusal is not None
    assert "STREAMGRID_ALLOWED_HOSTS" in refusal.reason
    assert "\n" not in refusal.reason and "\r" not in refusal.reason


def test_star_answers_every_name() -> None:
    policy = BrowserPolicy.build(["*"], own_names=[])
    assert policy.refusal("GET", {"host": "anything.example"}, "http") is None


def test_a_request_without_host_is_served() -> None:
    assert refused("GET", None) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "BREW"])
def test_a_cross_site_write_is_refused(method: str) -> None:
    assert refused(method, origin="http://evil.example") == 403
    assert refused(method, origin="null") == 403
    assert refused(method, origin="http://127.0.0.1:9999") == 403  # another port
    assert refused(method, origin="https://127.0.0.1:8080") == 403  # another scheme
    assert refused(method, origin="http://localhost:8080") == 403  # another name
    assert refused(method, sec_fetch_site="cross-site") == 403  # no Origin


def test_the_refusal_says_which_origin() -> None:
    refusal = POLICY.refusal("POST", {"host": OWN, "origin": "http://evil.example"}, "http")
    assert refusal is not None
    assert refusal.reason == "Cross-site request refused: http://evil.example"


def test_a_same_origin_write_and_an_allowed_origin_are_served() -> None:
    assert refused(origin="http://127.0.0.1:8080", sec_fetch_site="same-origin") is None
    assert refused(host="localhost:8080", origin="http://localhost:8080") is None
    assert refused(host="mybox", origin="http://mybox:80") is None  # default port
    assert refused(origin="http://app.example.com:3000", sec_fetch_site="cross-site") is None
    assert refused(origin="HTTP://App.Example.com:3000") is None
    assert refused(sec_fetch_site="same-origin") is None
    assert refused(sec_fetch_site="none") is None  # typed by the user


def test_behind_a_tls_proxy_the_origin_is_the_one_the_client_used() -> None:
    host = "gateway.example.com"
    assert refused(host=host, origin="https://gateway.example.com", x_forwarded_proto="https") is (
        None
    )
    assert refused(host=host, origin="https://gateway.example.com") == 403


def test_cross_site_reads_that_are_not_navigations_are_refused() -> None:
    # An <img> of a kept frame on another site: Fetch Metadata's resource isolation.
    assert refused("GET", sec_fetch_site="cross-site", sec_fetch_mode="no-cors") == 403
    assert refused("GET", origin="http://evil.example", sec_fetch_site="cross-site") == 403
    # A link from another site opens the dashboard.
    navigation = {"sec_fetch_mode": "navigate", "sec_fetch_dest": "document"}
    assert refused("GET", sec_fetch_site="cross-site", **navigation) is None
    assert refused("GET", sec_fetch_site="cross-site", sec_fetch_mode="navigate") is None
    embed = {"sec_fetch_mode": "navigate", "sec_fetch_dest": "embed"}
    assert refused("GET", sec_fetch_site="cross-site", **embed) == 403
    # Same-site reads: the browser keeps the answer from the page.
    assert refused("GET", origin="http://localhost:3000", sec_fetch_site="same-site") is None


@pytest.mark.parametrize(
    ("origin", "normal"),
    [
        ("http://Example.com", "http://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("http://example.com:8080/", "http://example.com:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_origins_are_compared_as_browsers_send_them(origin: str, normal: str) -> None:
    assert normal_origin(origin) == normal


@pytest.mark.parametrize(
    "origin",
    ["null", "example.com", "ftp://example.com", "http://example.com/path", "http://u@h", ""],
)
def test_an_allowed_origin_must_be_an_origin(origin: str) -> None:
    with pytest.raises(InvalidOrigin):
        BrowserPolicy.build([], [origin])
