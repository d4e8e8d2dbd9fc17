"""rtsp:// and rtsps:// URLs as the client uses them: split from their
credentials (which travel only in Authorization headers), redirect locations
joined to them, and encoded for a request line.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from ...core.urls import host_name_problem
from .auth import Credentials
from .errors import RtspError, Unsupported, shown

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}  # RFC 2326 and IANA's rtsps


def split_url(url: str) -> tuple[str, str, int, Credentials | None]:
    """(the URL without credentials, host, port, credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL" and the like
        # Not the exception's text: it may quote the netloc, password and all.
        raise RtspError("malformed URL (urlsplit refused it)") from None

    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise Unsupported(f"not an rtsp:// or rtsps:// URL: {parts.scheme}")
    host = parts.hostname
    problem = host_name_problem(host)
    if problem is not None:
        raise RtspError(f"invalid host {shown(host)}: {problem}")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise RtspError("malformed URL (its port is not a number from 1 to 65535)") from None
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    creds = None
    if parts.username is not None:
        creds = Credentials(unquote(parts.username), unquote(parts.password or ""))
    return clean, host, port, creds


def request_uri(uri: str) -> str:
    """A URI fit for the request line: the camera's spaces, control and
    non-ASCII characters percent-encoded (no request it can split in two)."""
    return re.sub(
        r"[^\x21-\x7e]", lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), uri.strip()
    )


def join_location(base: str, location: str) -> str:
    """``location`` resolved against ``base`` (urljoin knows rtsp:// only)."""
    scheme = urlsplit(base).scheme
    joined = urljoin("rtsp" + base[len(scheme) :], location.strip())
    if urlsplit(location.strip()).scheme:
        return location.strip()
    return scheme + joined[len("rtsp") :]


def origin_url(scheme: str, host: str, port: int) -> str:
    """scheme://host:port, as a reason names where credentials may go."""
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
