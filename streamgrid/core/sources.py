"""The source policy: which addresses a camera may be at.

A stream's URL names a host, and the worker connects to it from inside our
network. Without a policy anyone who may call /start can point the worker at
cloud metadata (169.254.169.254), the Kubernetes API server or a service on
loopback, and read from /status what answered there: a port scanner. So every
address a worker connects to is checked first, in the spelling the operating
system would connect to (``normalise_host``: 2130706433, 0x7f000001,
0177.0.0.1, 127.1 and ::ffff:127.0.0.1 are all 127.0.0.1), and a host name is
looked up and each of its addresses checked at every connection, the socket
then connecting to an address that was checked (``resolve_and_check``): no
second lookup, so no window for DNS rebinding.

A refused source fails the stream with the same reason whatever listens on
its port.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never a camera: "this host" (0.0.0.0 connects to loopback on Linux) and the
# unspecified ::, link-local (cloud metadata lives at 169.254.169.254),
# multicast and broadcast.
DEFAULT_DENY_CIDRS: tuple[str, ...] = (
    "0.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "fe80::/10",
    "ff00::/8",
)
# Denied in the cluster, where loopback is the pod itself; allowed in the
# embedded runtime, where the demo camera is there.
LOOPBACK_CIDRS: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

# inet_aton's parts: decimal, octal (a leading 0) or hexadecimal (0x), one to
# four of them. Anything else is a name (and is looked up, then checked).
_NUMERIC_PART = r"(?:0[xX][0-9a-fA-F]+|[1-9][0-9]*|0[0-7]*)"
_NUMERIC_IPV4 = re.compile(rf"{_NUMERIC_PART}(?:\.{_NUMERIC_PART}){{0,3}}")


class SourceNotAllowed(Exception):
    """The policy refuses the camera's address; retrying will not help.

    Not an OSError nor a ValueError: the RTSP client's handlers turn those
    into retryable errors."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"source not allowed: {reason}")
        self.reason = reason


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks from ``10.0.0.0/8`` or ``192.0.2.7`` (one address); raises
    ValueError naming the first that is not one (host bits set included)."""
    networks: list[IPNetwork] = []
    for value in values:
        text = value.strip()
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError as exc:
            raise ValueError(f"{text[:60]!r} is not a network: {exc}") from None
    return tuple(networks)


def _canonical(address: IPAddress) -> IPAddress:
    """The address a connection actually reaches: an IPv4-mapped IPv6
    address is its IPv4 address. The scope of a link-local address dropped."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


# IPv6 forms whose traffic reaches an IPv4 address: IPv4-compatible (::/96,
# deprecated), NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002::/16).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one relays to, checked as well: a deny list
    of IPv4 ranges holds whatever the IPv6 spelling."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in n for n in _NAT64) or (
        address in _IPV4_COMPATIBLE and int(address) > 1  # not :: or ::1
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """inet_aton()'s reading of ``text``, which getaddrinfo() takes as an
    address without a lookup: a.b.c.d, a.b.c (c 16 bits), a.b (b 24 bits)
    or a (32 bits), each part decimal, octal or hexadecimal."""
    if _NUMERIC_IPV4.fullmatch(text) is None:
        return None
    parts = [
        int(p, 16) if p[:2] in ("0x", "0X") else int(p, 8 if p.startswith("0") else 10)
        for p in text.split(".")
    ]
    *leading, last = parts
    if any(part > 0xFF for part in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    value = last
    for i, part in enumerate(leading):
        value |= part << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def normalise_host(host: str) -> IPAddress | None:
    """The address a literal host (a URL's, with or without brackets) means, in
    whatever spelling the system's resolver takes without a lookup; None for a
    host name. ``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1`` and
    ``[::ffff:127.0.0.1]`` are all 127.0.0.1."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not text.isascii():
        # What Python's socket module does with a str host before the resolver
        # sees it: IDNA, whose NFKC maps fullwidth digits to ASCII ones.
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if ":" in text:
        try:
            return _canonical(ipaddress.IPv6Address(text))
        except ValueError:
            return None
    return _inet_aton(text)


@dataclass(frozen=True)
class Endpoint:
    """One checked address to connect to, as getaddrinfo() gives it."""

    family: socket.AddressFamily
    sockaddr: tuple[Any, ...]
    address: IPAddress  # as checked


@dataclass(frozen=True)
class SourcePolicy:
    """Where cameras may be.

    Precedence: deny wins. An address is refused when it is in any ``deny``
    network; otherwise, when ``allow`` is empty it is allowed, and when it is
    not, only an address in some ``allow`` network is. IPv4-mapped IPv6
    addresses are checked as their IPv4 address.
    """

    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = parse_networks(DEFAULT_DENY_CIDRS)

    @classmethod
    def from_cidrs(
        cls,
        allow: Iterable[str] = (),
        deny: Iterable[str] = DEFAULT_DENY_CIDRS,
        *,
        deny_loopback: bool = False,
        deny_hosts: Iterable[str] = (),
    ) -> SourcePolicy:
        """``deny_hosts``: single addresses added to the deny list (the API
        server's); anything there that is not an address is ignored."""
        extra = list(LOOPBACK_CIDRS) if deny_loopback else []
        for host in deny_hosts:
            address = normalise_host(host.strip())
            if address is not None:
                extra.append(str(address))
        return cls(parse_networks(allow), parse_networks([*deny, *extra]))

    def problem(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused ("is in denied range 169.254.0.0/16"),
        or None when it is allowed."""
        address = _canonical(address)
        embedded = _embedded_ipv4(address)
        for network in self.deny:
            if address.version == network.version and address in network:
                return f"in denied range {network}"
            # Relayed to an IPv4 address that is denied:
            if embedded is not None and embedded.version == network.version and embedded in network:
                return f"carries {embedded}, in denied range {network}"
        if self.allow and not any(
            address.version == n.version and address in n for n in self.allow
        ):
            return "in no allowed range"
        return None

    def check_address(self, address: IPAddress, host: str | None = None) -> None:
        """Raises SourceNotAllowed when ``address`` (that ``host`` resolves to
        or spells, if given) is refused."""
        problem = self.problem(address)
        if problem is None:
            return
        shown = _canonical(address)
        if host is None or host.strip("[]").lower() == str(shown):
            raise SourceNotAllowed(f"{shown} is {problem}")
        verb = "is" if normalise_host(host) is not None else "resolves to"
        raise SourceNotAllowed(f"{host} {verb} {shown}, {problem}")

    def check_literal(self, host: str) -> IPAddress | None:
        """For a host that is an address in any spelling: raises
        SourceNotAllowed if it is refused, else returns it. None for a host
        name, which is not looked up here."""
        address = normalise_host(host)
        if address is not None:
            self.check_address(address, host)
        return address

    def resolve_and_check(self, host: str, port: int, timeout: float) -> list[Endpoint]:
        """The addresses to connect to for ``host``, every one of them checked:
        any refused refuses the host (a name that resolves to a public and a
        private address is not half allowed). Connect only to what this
        returns. Raises SourceNotAllowed, TimeoutError when the lookup takes
        longer than ``timeout``, or the lookup's own OSError."""
        literal = self.check_literal(host)
        if literal is not None:
            # The canonical spelling, numeric only: no lookup, and the socket
            # reaches the address just checked (a link-local one keeps its scope).
            text = host.strip("[]") if literal.version == 6 and "%" in host else str(literal)
            infos = socket.getaddrinfo(
                text, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )
        else:
            infos = _lookup(host, port, timeout)
        endpoints: list[Endpoint] = []
        for family, _, _, _, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            self.check_address(address, host)
            endpoint = Endpoint(family, tuple(sockaddr), _canonical(address))
            if endpoint not in endpoints:
                endpoints.append(endpoint)
        if not endpoints:
            raise OSError(f"no address found for {host}")
        return endpoints


def _lookup(host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
    """getaddrinfo() within ``timeout``: it takes none of its own, and a dead
    DNS server must not hold a connection attempt past its deadline. (A
    lookup that outlives it ends on its own, in its daemon thread.)"""
    found: list[tuple[Any, ...]] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="resolve", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if thread.is_alive():
        raise TimeoutError(f"looking up {host} took longer than {timeout:.1f} s")
    if failed:
        raise failed[0]
    return found
