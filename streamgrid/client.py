"""The HTTP API from Python: what the ``streamgrid`` CLI client calls.

One method per endpoint. A refusal by the server (any 4xx or 5xx) raises
``ApiError`` with the server's one-line plain-text reason; a server that
cannot be reached raises ``Unreachable``. The bearer token goes into the
``Authorization`` header and nowhere else: no message here ever carries it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8080"
MAX_REASON = 300  # characters of a server's reason shown: one line, never a page


class ClientError(Exception):
    """Anything that makes a command fail (exit 1), in words for the user."""


class ApiError(ClientError):
    """The server answered with an error status; ``reason`` is its plain-text body."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{reason} (HTTP {status})")
        self.status = status
        self.reason = reason


class Unreachable(ClientError):
    """No answer: connection refused, timed out, a name that does not resolve."""


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """A server's answer as one line of text: whitespace runs collapsed, capped."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def reason_of(response: httpx.Response) -> str:
    """The one-line reason of an error answer (the API's errors are plain text;
    anything else, a proxy's HTML page say, is shown by its status alone)."""
    kind = response.headers.get("content-type", "")
    text = response.text if kind.startswith("text/plain") else ""
    return one_line(text) or response.reason_phrase or f"HTTP {response.status_code}"


def check_server_url(server: str) -> str:
    """The server's base URL, checked: http(s), a host, no credentials in it
    (a token goes in --token, where it is never shown). ValueError says why."""
    parts = urlsplit(server.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"the server must be an http:// or https:// URL, not {server!r}")
    if not parts.hostname:
        raise ValueError(f"the server URL has no host: {server!r}")
    if parts.username or parts.password:
        raise ValueError("the server URL must not carry credentials: use --token")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def stream_path(prefix: str, stream_id: str) -> str:
    """``/status/<id>`` and the like, the id quoted so that it stays one path segment."""
    return f"{prefix}/{quote(stream_id, safe='')}"


class StreamgridClient:
    """One server; ``close()`` (or ``with``) ends its connections."""

    def __init__(self, server: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.server = check_server_url(server)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def __enter__(self) -> StreamgridClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, params=params, data=data)
        except httpx.TimeoutException:
            raise Unreachable(f"{self.server} did not answer in time") from None
        except httpx.TransportError as exc:
            # httpx's message names the failure (refused, no such host), never headers.
            raise Unreachable(f"cannot reach {self.server}: {one_line(str(exc))}") from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, reason_of(response))
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ClientError(f"{self.server} answered with something not JSON") from None

    def start(self, rtsp_url: str, params: Mapping[str, str]) -> dict[str, str]:
        """POST /start with the spec's form field; the answer has ``stream_id``."""
        body = self._json(self._call("POST", "/start", params=params, data={"rtsp_url": rtsp_url}))
        if not isinstance(body, dict) or not isinstance(body.get("stream_id"), str):
            raise ClientError("the server's answer to /start has no stream_id")
        return {str(k): str(v) for k, v in body.items()}

    def list_streams(self) -> dict[str, dict[str, Any]]:
        """GET /list: every stream not stopped, by id."""
        body = self._json(self._call("GET", "/list"))
        streams = body.get("active_streams") if isinstance(body, dict) else None
        if not isinstance(streams, dict):
            raise ClientError("the server's answer to /list has no active_streams")
        return streams

    def status(self, stream_id: str) -> str:
        """POST /status/<id>: ``Stream status: <state>``."""
        line = self._json(self._call("POST", stream_path("/status", stream_id)))
        return str(line)

    def details(self, stream_id: str) -> dict[str, Any]:
        """GET /streams/<id>: everything known about one stream."""
        body = self._json(self._call("GET", stream_path("/streams", stream_id)))
        if not isinstance(body, dict):
            raise ClientError("the server's answer to /streams/<id> is not an object")
        return body

    def streams(self) -> tuple[float, list[dict[str, Any]]]:
        """GET /streams: the server's clock and every stream not stopped, in detail."""
        body = self._json(self._call("GET", "/streams"))
        if not isinstance(body, dict) or not isinstance(body.get("streams"), list):
            raise ClientError("the server's answer to /streams has no streams")
        return float(body.get("now", 0.0)), [s for s in body["streams"] if isinstance(s, dict)]

    def stop(self, stream_id: str, params: Mapping[str, str] | None = None) -> bytes:
        """POST /stop/<id>: the grid, a JPEG."""
        return self._call("POST", stream_path("/stop", stream_id), params=params).content

    def stop_all(self) -> dict[str, str]:
        """POST /stop: what became of each stream that was running."""
        body = self._json(self._call("POST", "/stop"))
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, dict):
            raise ClientError("the server's answer to /stop has no results")
        return {str(k): str(v) for k, v in results.items()}
