"""The source policy (core/sources.py): spellings, precedence, reasons, lookups;
and how its settings reach the gateway's check, workers and capture pods."""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from typing import Any

import pytest

from streamgrid.capture.settings import CaptureSettings, SettingsError
from streamgrid.core.sources import (
    DEFAULT_DENY_CIDRS,
    SourceNotAllowed,
    SourcePolicy,
    normalise_host,
)
from streamgrid.gateway.requests import BadRequest, check_source
from streamgrid.operator.podspec import capture_pod
from streamgrid.operator.settings import OperatorSettings

LOOPBACK_DENIED = SourcePolicy.from_cidrs(deny_loopback=True)

# Every spelling the resolver takes for an address without a lookup.
SPELLINGS = [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0177.0000.0.01", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("127.0.0.0x1", "127.0.0.1"),
    ("\uff11\uff12\uff17.0.0.1", "127.0.0.1"),  # fullwidth digits: IDNA maps them
    ("::ffff:127.0.0.1", "127.0.0.1"),
    ("[::ffff:127.0.0.1]", "127.0.0.1"),
    ("::ffff:7f00:1", "127.0.0.1"),
    ("::ffff:169.254.169.254", "169.254.169.254"),
    ("0", "0.0.0.0"),
    ("::1", "::1"),
    ("[fe80::1]", "fe80::1"),
    ("fe80::1%lo", "fe80::1"),
    ("2852039166", "169.254.169.254"),
]


@pytest.mark.parametrize(("host", "address"), SPELLINGS)
def test_numeric_spellings_are_the_address_they_connect_to(host: str, address: str) -> None:
    assert normalise_host(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize(("host", "address"), SPELLINGS)
def test_the_spellings_agree_with_the_systems_resolver(host: str, address: str) -> None:
    """What getaddrinfo() connects to for the same text, without a lookup."""
    infos = socket.getaddrinfo(
        host.strip("[]"), 554, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
    )
    resolved = {ipaddress.ip_address(str(info[4][0])) for info in infos}
    resolved = {a.ipv4_mapped or a if isinstance(a, ipaddress.IPv6Address) else a for a in resolved}
    assert resolved == {ipaddress.ip_address(address)}


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "cam.example",
        "08.0.0.1",
        "0x",
        "1.2.3.4.5",
        "4294967296",
        "256.0.0.1",
        "a::b::c",
    ],
)
def test_names_and_what_is_no_address_are_not_addresses(host: str) -> None:
    assert normalise_host(host) is None


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("169.254.169.254", "169.254.169.254 is in denied range 169.254.0.0/16"),
        ("2852039166", "2852039166 is 169.254.169.254, in denied range 169.254.0.0/16"),
        ("::ffff:169.254.169.254", "::ffff:169.254.169.254 is 169.254.169.254, in denied range "),
        ("[fe80::1]", "fe80::1 is in denied range fe80::/10"),
        ("0.0.0.0", "0.0.0.0 is in denied range 0.0.0.0/8"),
        ("::", ":: is in denied range ::/128"),
        ("224.0.0.251", "224.0.0.251 is in denied range 224.0.0.0/4"),
        ("ff02::1", "ff02::1 is in denied range ff00::/8"),
        ("255.255.255.255", "255.255.255.255 is in denied range 255.255.255.255/32"),
    ],
)
def test_the_default_policy_refuses_what_is_never_a_camera(host: str, reason: str) -> None:
    with pytest.raises(SourceNotAllowed) as raised:
        SourcePolicy().check_literal(host)
    assert raised.value.reason.startswith(reason)
    assert str(raised.value) == f"source not allowed: {raised.value.reason}"


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "::1", "10.1.2.3", "192.0.2.7"])
def test_the_default_policy_allows_loopback_and_private_addresses(host: str) -> None:
    assert SourcePolicy().check_literal(host) is not None


@pytest.mark.parametrize("host", [h for h, a in SPELLINGS if a in ("127.0.0.1", "::1")])
def test_with_loopback_denied_no_spelling_of_it_gets_through(host: str) -> None:
    with pytest.raises(SourceNotAllowed, match=r"in denied range (127\.0\.0\.0/8|::1/128)"):
        LOOPBACK_DENIED.check_literal(host)


def test_deny_wins_over_allow_and_an_allow_list_admits_only_its_networks() -> None:
    policy = SourcePolicy.from_cidrs(allow=["10.0.0.0/8"], deny=["10.9.0.0/16"])
    assert policy.check_literal("10.1.2.3") is not None
    with pytest.raises(SourceNotAllowed, match=r"^source not allowed: 10\.9\.0\.1 is in denied"):
        policy.check_literal("10.9.0.1")
    with pytest.raises(SourceNotAllowed, match=r"192\.0\.2\.7 is in no allowed range$"):
        policy.check_literal("192.0.2.7")
    with pytest.raises(SourceNotAllowed, match=r"::1 is in no allowed range"):
        policy.check_literal("::1")  # an IPv4-only allow list admits no IPv6


def test_a_host_name_is_not_looked_up_by_the_literal_check() -> None:
    assert LOOPBACK_DENIED.check_literal("localhost") is None


def test_a_name_is_checked_by_what_it_resolves_to() -> None:
    with pytest.raises(SourceNotAllowed) as raised:
        LOOPBACK_DENIED.resolve_and_check("localhost", 554, 5.0)
    assert raised.value.reason.startswith("localhost resolves to ")
    assert "in denied range" in raised.value.reason
    endpoints = SourcePolicy().resolve_and_check("localhost", 554, 5.0)
    assert endpoints and all(e.address.is_loopback for e in endpoints)


def test_the_endpoints_are_the_checked_address_not_the_spelling() -> None:
    (endpoint,) = SourcePolicy().resolve_and_check("0x7f000001", 8554, 1.0)
    assert endpoint.sockaddr[:2] == ("127.0.0.1", 8554)
    assert endpoint.family == socket.AF_INET


def test_every_address_of_a_name_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name with a harmless address first and metadata second is refused
    (the connection might fall through to the second)."""

    def lookup(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host != "two.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    with pytest.raises(
        SourceNotAllowed, match=re.escape("two.example resolves to 169.254.169.254")
    ):
        SourcePolicy().resolve_and_check("two.example", 554, 1.0)


def test_a_lookup_that_hangs_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def stuck(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        release.wait(10)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", stuck)
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=re.escape("looking up cam.example")):
            SourcePolicy().resolve_and_check("cam.example", 554, 0.3)
    finally:
        release.set()
    assert time.monotonic() - started < 5


def test_a_lookup_failure_is_the_resolvers_error() -> None:
    with pytest.raises(socket.gaierror):
        SourcePolicy().resolve_and_check("no-such-host.invalid", 554, 5.0)


# -- settings -----------------------------------------------------------------
def test_settings_take_comma_separated_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMGRID_SOURCE_ALLOW_CIDRS", "10.0.0.0/8, 192.0.2.7")
    monkeypatch.setenv("STREAMGRID_SOURCE_DENY_CIDRS", "10.9.0.0/16")
    monkeypatch.setenv("STREAMGRID_SOURCE_DENY_LOOPBACK", "true")
    settings = CaptureSettings(stream_id="s", source_url="rtsp://cam/x")
    assert settings.source_allow_cidrs == ["10.0.0.0/8", "192.0.2.7/32"]
    assert settings.source_deny_cidrs == ["10.9.0.0/16"]  # replaces the built-in list
    policy = settings.source_policy()
    assert [str(n) for n in policy.deny] == ["10.9.0.0/16", "127.0.0.0/8", "::1/128"]


def test_the_built_in_deny_list_is_the_default() -> None:
    settings = CaptureSettings(stream_id="s", source_url="rtsp://cam/x")
    assert settings.source_deny_cidrs == list(DEFAULT_DENY_CIDRS)
    assert settings.source_allow_cidrs == [] and settings.source_deny_loopback is False


@pytest.mark.parametrize("value", ["10.0.0.1/8", "not-a-network", "10.0.0.0/33"])
def test_a_bad_network_in_the_settings_is_refused_with_its_name(value: str) -> None:
    with pytest.raises(SettingsError, match="is not a network"):
        CaptureSettings(stream_id="s", source_url="rtsp://cam/x", source_deny_cidrs=value)


def test_in_a_pod_the_api_servers_cluster_ip_is_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    policy = CaptureSettings(stream_id="s", source_url="rtsp://cam/x").source_policy()
    with pytest.raises(SourceNotAllowed, match=r"10\.96\.0\.1 is in denied range 10\.96\.0\.1/32"):
        policy.check_literal("10.96.0.1")


# -- where the policy is applied ------------------------------------------------
@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("rtsp://169.254.169.254/x", "Source not allowed: 169.254.169.254 is in denied range"),
        ("rtsp://0x7f000001:554/x", "Source not allowed: 0x7f000001 is 127.0.0.1, in denied"),
        ("rtsp://[fe80::1]:554/x", "Source not allowed: fe80::1 is in denied range fe80::/10"),
    ],
)
def test_start_refuses_a_denied_literal_address(url: str, body: str) -> None:
    with pytest.raises(BadRequest) as raised:
        check_source(url, LOOPBACK_DENIED)
    assert str(raised.value).startswith(body)


def test_start_leaves_host_names_to_the_worker() -> None:
    check_source("rtsp://localhost:554/x", LOOPBACK_DENIED)  # no lookup, no 400


def test_capture_pods_carry_the_policy() -> None:
    settings = OperatorSettings(
        store_url="s3://bucket/frames",
        source_allow_cidrs="10.0.0.0/8",
        source_deny_loopback=True,
        source_deny_cidrs=[*DEFAULT_DENY_CIDRS, "172.18.0.0/16"],
        KUBERNETES_SERVICE_HOST="10.96.0.1",
    )
    stream = {
        "metadata": {"name": "cam1", "namespace": "ns", "uid": "u-1"},
        "spec": {"source": {"url": "rtsp://cam/x"}},
    }
    env = {
        e["name"]: e.get("value")
        for e in capture_pod(stream, settings)["spec"]["containers"][0]["env"]
    }
    assert env["STREAMGRID_SOURCE_ALLOW_CIDRS"] == "10.0.0.0/8"
    deny = env["STREAMGRID_SOURCE_DENY_CIDRS"].split(",")
    assert deny == [*DEFAULT_DENY_CIDRS, "172.18.0.0/16", "10.96.0.1/32"]
    assert env["STREAMGRID_SOURCE_DENY_LOOPBACK"] == "true"
    # What the pod reads back is the same policy.
    pod = CaptureSettings(
        stream_id="cam1",
        source_url="rtsp://cam/x",
        source_allow_cidrs=env["STREAMGRID_SOURCE_ALLOW_CIDRS"],
        source_deny_cidrs=env["STREAMGRID_SOURCE_DENY_CIDRS"],
        source_deny_loopback=env["STREAMGRID_SOURCE_DENY_LOOPBACK"],
    )
    with pytest.raises(SourceNotAllowed, match=re.escape("172.18.0.2 is in denied range")):
        pod.source_policy().check_literal("172.18.0.2")
    with pytest.raises(
        SourceNotAllowed, match=re.escape("127.0.0.1 is in denied range 127.0.0.0/8")
    ):
        pod.source_policy().check_literal("127.0.0.1")


@pytest.mark.parametrize(
    ("spelling", "carried"),
    [
        ("::7f00:1", "127.0.0.1"),  # IPv4-compatible
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64
        ("64:ff9b:1::a9fe:a9fe", "169.254.169.254"),  # local-use NAT64
        ("2002:a9fe:a9fe::", "169.254.169.254"),  # 6to4
    ],
)
def test_ipv6_forms_that_relay_to_ipv4_are_checked_as_that_address(
    spelling: str, carried: str
) -> None:
    policy = SourcePolicy.from_cidrs(deny_loopback=True)
    with pytest.raises(SourceNotAllowed, match=f"carries {re.escape(carried)}"):
        policy.check_literal(f"[{spelling}]")
    assert SourcePolicy.from_cidrs().problem(ipaddress.ip_address("64:ff9b::808:808")) is None
