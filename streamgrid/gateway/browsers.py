"""What web pages in the user's browser may not do to this server.

A server on 127.0.0.1 is reachable from every page the user opens, and any
page may send it a form (a "simple" cross-site request needs no permission).
Two attacks follow, and each has its check here, before any route runs:

- **DNS rebinding**: a page's own name is re-pointed at 127.0.0.1, so the
  page's scripts read our answers as if same-origin (every camera's URL,
  their pictures). Its requests carry that name in ``Host``, so the server
  answers only to names it is known by: any IP literal (rebinding needs a
  name; probes and clients by address send one), ``localhost``, the
  machine's own host name, and ``STREAMGRID_ALLOWED_HOSTS``. Anything else:
  421 Misdirected Request.
- **Cross-site writes** (CSRF, as go2rtc's CVE-2024-29192): any request but
  GET, HEAD and OPTIONS whose ``Origin`` is not the server's own origin nor
  in ``STREAMGRID_ALLOWED_ORIGINS`` (or, with no Origin, whose
  ``Sec-Fetch-Site`` is ``cross-site``) is a 403 and changes nothing. So is
  a cross-site load that is not a navigation (an ``<img>`` of a kept frame
  on another site: the Fetch Metadata resource-isolation policy). Reads
  stay private by the browser's same-origin policy: CORS is closed unless
  allowed origins are set (app.py), and then open to exactly those.

Clients that are not browsers (curl, the CLI, ``kubectl streamgrid``,
scripts) send neither ``Origin`` nor ``Sec-Fetch-*``: they are served as
before, with or without a token.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..core.logs import log_event
from .auth import App, Receive, Send, plain_answer

log = logging.getLogger("streamgrid.gateway")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": "80", "https": "443"}
SHOWN_MAX = 200  # characters of a refused Host or Origin echoed in the reason
HOSTS_SETTING = "STREAMGRID_ALLOWED_HOSTS"


class InvalidOrigin(ValueError):
    """An allowed origin that is not ``scheme://host[:port]``."""


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    event: str  # the log line's event name


def _shown(value: str) -> str:
    """A header value as a one-line reason may echo it."""
    text = "".join(ch if ch.isprintable() else "?" for ch in value[:SHOWN_MAX])
    return text + ("..." if len(value) > SHOWN_MAX else "")


def split_host(value: str) -> tuple[str, str] | None:
    """``Host`` as (name, port): lower case, one trailing dot and a port
    dropped from the name, an IPv6 literal without its brackets; None when
    it is no host at all."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        name, _, port = value.partition(":")
    name = name.removesuffix(".")
    if not name or (port and not port.isdigit()) or any(c in name for c in "/@\\ \t?#"):
        return None
    return name, port


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def normal_origin(value: str) -> str:
    """``scheme://host[:port]`` in the form browsers send it (lower case, no
    default port); InvalidOrigin for anything else, ``null`` included."""
    parts = urlsplit(value.strip())
    host = split_host(parts.netloc) if parts.netloc and "@" not in parts.netloc else None
    if parts.scheme not in DEFAULT_PORTS or host is None or parts.path not in ("", "/"):
        raise InvalidOrigin(f"not an origin (scheme://host[:port]): {_shown(value)!r}")
    if parts.query or parts.fragment:
        raise InvalidOrigin(f"not an origin (scheme://host[:port]): {_shown(value)!r}")
    return _origin(parts.scheme, *host)


def _origin(scheme: str, name: str, port: str) -> str:
    shown = f"[{name}]" if ":" in name else name
    return f"{scheme}://{shown}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


@dataclass(frozen=True)
class BrowserPolicy:
    """Which Host names the server answers to and which other origins may
    write to it; made once at start-up from the settings."""

    names: frozenset[str]  # exact names, lower case
    suffixes: tuple[str, ...] = ()  # "*.example.com" -> ".example.com"
    any_host: bool = False  # "*": every name (a proxy in front checks them)
    origins: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        own_names: Iterable[str] | None = None,
    ) -> BrowserPolicy:
        """``own_names``: the machine's names (default: its host name)."""
        own = [socket.gethostname()] if own_names is None else list(own_names)
        names, suffixes, any_host = {"localhost"}, [], False
        for raw in [*own, *allowed_hosts]:
            pattern = raw.strip().lower().removesuffix(".")
            if pattern == "*":
                any_host = True
            elif pattern.startswith("*."):
                suffixes.append(pattern[1:])
            elif pattern:
                names.add(pattern)
        origins = frozenset(normal_origin(o) for o in allowed_origins)
        return cls(frozenset(names), tuple(suffixes), any_host, origins)

    def host_allowed(self, name: str) -> bool:
        return (
            self.any_host
            or is_ip_literal(name)
            or name in self.names
            or name.endswith(self.suffixes)  # a "*." pattern never matches its apex
        )

    def refusal(self, method: str, headers: Mapping[str, str], scheme: str) -> Refusal | None:
        """Why a request must not reach the routes; None when it may.
        ``headers``: lower-case names (the first of each)."""
        raw_host = headers.get("host")
        host = split_host(raw_host) if raw_host is not None else ("", "")
        if raw_host is not None and (host is None or not self.host_allowed(host[0])):
            return Refusal(
                421,
                f"Misdirected request: this server does not answer to the host "
                f"{_shown(raw_host)!r} (allow it with {HOSTS_SETTING})",
                "request.host_refused",
            )
        origin = headers.get("origin")
        site = headers.get("sec-fetch-site", "").lower()
        if origin is not None:
            if self._origin_allowed(origin, host, scheme, headers):
                return None
            if method in SAFE_METHODS and site != "cross-site":
                return None  # a same-site read: the browser keeps its answer from the page
            return _cross_site(_shown(origin))
        if site == "cross-site" and not (method in SAFE_METHODS and _navigation(headers)):
            return _cross_site("a cross-site request without Origin")
        return None

    def _origin_allowed(
        self, origin: str, host: tuple[str, str] | None, scheme: str, headers: Mapping[str, str]
    ) -> bool:
        try:
            normal = normal_origin(origin)
        except InvalidOrigin:
            return False  # "null" (a sandboxed frame, a file: page) included
        if normal in self.origins:
            return True
        if not host or not host[0]:
            return False
        # The origin the request reached: its scheme as the client used it
        # (a TLS-terminating proxy says so; no page can set that header on a
        # cross-site request without a preflight, which CORS refuses).
        schemes = {scheme, headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()}
        return any(normal == _origin(s, *host) for s in schemes if s in DEFAULT_PORTS)


def _navigation(headers: Mapping[str, str]) -> bool:
    """A top-level or frame navigation (a link from another site), which the
    resource-isolation policy lets through: it shows the user the page, it
    does not hand the answer to the other site."""
    mode = headers.get("sec-fetch-mode", "").lower()
    dest = headers.get("sec-fetch-dest", "").lower()
    return mode in ("navigate", "nested-navigate") and dest not in ("object", "embed")


def _cross_site(what: str) -> Refusal:
    return Refusal(403, f"Cross-site request refused: {what}", "request.cross_site_refused")


class RefuseCrossSite:
    """ASGI middleware: requests the policy refuses get their plain-text 421
    or 403 before any route (or authentication) runs."""

    def __init__(self, app: App, policy: BrowserPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for key, value in scope.get("headers") or []:
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        method = str(scope.get("method", ""))
        refused = self.policy.refusal(method, headers, str(scope.get("scheme", "http")))
        if refused is None:
            await self.app(scope, receive, send)
            return
        log_event(
            log,
            refused.event,
            logging.WARNING,
            method=method,
            path=_shown(str(scope.get("path", ""))),
            host=_shown(headers.get("host", "")),
            origin=_shown(headers.get("origin", "")),
        )
        await plain_answer(send, refused.status, refused.reason)
