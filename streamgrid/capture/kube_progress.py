"""Progress into the VideoStream's status, from inside a capture pod.

Rate: a PATCH when the state changes (or the store fails or recovers), at
once; counts and times at most once per ``interval`` seconds (jittered
+-20 %), coalesced. The interval starts at STREAMGRID_PROGRESS_INTERVAL and
then is what the operator asks in the answer to each PATCH
(status.progressIntervalSeconds): it grows with the fleet so that all pods
together stay within the operator's status_writes_per_second. Sent from a
background thread, so a slow API server never stalls capture.

At start, one GET of the status: its ``framesCaptured`` is the floor of the
worker's count, so a restarted pod or container never counts backwards.

Standard library only (one PATCH with the pod's service-account token), and
of that http.client alone: the kubernetes client would add tens of MB to
every capture pod, urllib.request most of a megabyte.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import ssl
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core import crd_names
from ..core.logs import log_event
from ..core.models import StreamState
from ..core.timestamps import format_utc
from .progress import Progress

log = logging.getLogger("streamgrid.capture")


# The most of an answer that is read: a VideoStream is a few kilobytes.
MAX_ANSWER = 4 * 1024 * 1024


class ApiError(OSError):
    """The API server answered with an error status (``code``)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"HTTP Error {code}: {reason}")
        self.code = code


class StatusEndpoint:
    """PATCHes one VideoStream's status subresource."""

    def __init__(
        self,
        api_url: str,
        namespace: str,
        name: str,
        token_file: Path,
        ca_file: Path | None,
        timeout: float = 10.0,
    ) -> None:
        self.url = (
            f"{api_url.rstrip('/')}/apis/{crd_names.API_VERSION}/namespaces/"
            f"{namespace}/{crd_names.PLURAL}/{name}/status"
        )
        self.token_file, self.timeout = token_file, timeout
        self.context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def _authorization(self) -> str:
        return f"Bearer {self.token_file.read_text().strip()}"  # re-read: projected tokens rotate

    def _call(self, method: str, headers: dict[str, str], body: bytes | None = None) -> bytes:
        """One request on a connection of its own; the answer's body, or
        ApiError for an error status (OSError when the server cannot be reached)."""
        parts = urlsplit(self.url)
        host, port = parts.hostname or "", parts.port
        connection = (
            http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self.context)
            if parts.scheme == "https"
            else http.client.HTTPConnection(host, port, timeout=self.timeout)
        )
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(method, target, body=body, headers=headers)
            reply = connection.getresponse()
            answer = reply.read(MAX_ANSWER)
            if reply.status >= 300:
                raise ApiError(reply.status, reply.reason)
            return answer
        except http.client.HTTPException as exc:  # a malformed answer
            raise OSError(f"the API server's answer could not be read ({exc!r})") from None
        finally:
            connection.close()

    def patch(self, status: dict[str, object]) -> float | None:
        """PATCHes; returns the count-report period the operator asks for
        (status.progressIntervalSeconds in the answer), None when it names none."""
        headers = {
            "Content-Type": "application/merge-patch+json",
            "Authorization": self._authorization(),
        }
        body = json.dumps({"status": status}).encode()
        return requested_interval(self._call("PATCH", headers, body))

    def _stream(self) -> Any:
        headers = {"Accept": "application/json", "Authorization": self._authorization()}
        return json.loads(self._call("GET", headers))

    def stop_wanted(self) -> bool:
        """Whether the stream itself is being stopped (spec.state Stopped, or
        deleted), rather than this pod replaced (an edit, an upgrade, a
        drain): then its last report says Stopped, else Restarting. True
        when it cannot tell (the report it always gave)."""
        try:
            stream = self._stream()
        except (OSError, ValueError):
            return True
        if not isinstance(stream, dict):
            return True
        meta, spec = stream.get("metadata") or {}, stream.get("spec") or {}
        return bool(meta.get("deletionTimestamp")) or spec.get("state") == "Stopped"

    def frames_captured(self) -> int:
        """The count the status shows now (0 when it shows none): a restarted
        pod or container continues from it, so the count never goes back.
        Raises OSError (ApiError included) or ValueError when it cannot tell."""
        stream = self._stream()
        status = stream.get("status") if isinstance(stream, dict) else None
        count = status.get("framesCaptured", 0) if isinstance(status, dict) else 0
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"status.framesCaptured is not a count: {count!r}")
        return count


def requested_interval(answer: bytes) -> float | None:
    """status.progressIntervalSeconds of a PATCH's answer, if it is a sane one."""
    try:
        stream: Any = json.loads(answer)
    except ValueError:
        return None
    status = stream.get("status") if isinstance(stream, dict) else None
    value = status.get("progressIntervalSeconds") if isinstance(status, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.5 <= value <= 3600:
        return float(value)
    return None


def frames_captured_floor(endpoint: StatusEndpoint, attempts: int = 3) -> int:
    """The status's count, a few tries over a second or two; 0 (logged) when
    the API server cannot say: the store's manifest and frames still bound it."""
    for attempt in range(attempts):
        try:
            return endpoint.frames_captured()
        except (OSError, ValueError) as exc:
            log_event(
                log,
                "progress.floor_unknown",
                logging.WARNING,
                attempt=attempt + 1,
                error=str(exc)[:300],
            )
            code = getattr(exc, "code", None)  # ApiError's (or urllib's HTTPError's)
            client_error = isinstance(code, int) and code < 500
            if client_error or attempt + 1 == attempts:
                break  # forbidden or gone: asking again will not change it
            time.sleep(0.5 * (attempt + 1))
    return 0


RESTARTING = "Restarting"  # captureState of a pod stopped to be replaced


def status_of(progress: Progress, replaced: bool = False) -> dict[str, object]:
    """``replaced``: the pod stops, its stream does not (its last report)."""
    stopped = progress.state is StreamState.STOPPED
    status: dict[str, object] = {
        "captureState": RESTARTING if stopped and replaced else progress.state.value,
        "captureReason": progress.reason[:1024],
        "framesCaptured": progress.frames_captured,
        "kept": progress.kept,
        # Set while frames are held in memory because the store refused them:
        # the gateway will not stop such a stream (they would be lost).
        "storeError": progress.store_error[:1024],
    }
    if progress.last_frame_at is not None:
        status["lastFrameAt"] = format_utc(progress.last_frame_at)
    if progress.grid is not None:  # the final report of a graceful stop
        grid = progress.grid
        status["grid"] = {
            "url": grid.url,
            "name": grid.name,
            "width": grid.width,
            "height": grid.height,
            "frames": grid.frames,
            "composedAt": format_utc(grid.composed_at),
        }
    elif progress.state is StreamState.CONNECTING:
        # A pod starting (again) captures more: a grid named before is stale
        # (null deletes it in a merge patch).
        status["grid"] = None
    return status


class KubeStatusProgress:
    def __init__(self, endpoint: StatusEndpoint, interval: float = 5.0) -> None:
        self.endpoint, self.interval = endpoint, interval
        self._latest: Progress | None = None
        self._sent: Progress | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._repaced = False
        self._replaced: bool | None = None  # the pod goes, its stream stays (asked at stop)
        self._thread = threading.Thread(target=self._run, name="kube-progress", daemon=True)
        self._thread.start()

    def report(self, progress: Progress) -> None:
        with self._lock:
            self._latest = progress
            if self._sent is None or (self._sent.state, self._sent.store_error) != (
                progress.state,
                progress.store_error,
            ):
                self._wake.set()  # at once: a state change, or the store failing or back

    def close(self, timeout: float = 10.0) -> None:
        """Send the last report now (the final state), then stop."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._closed:
            if self._repaced:
                # A new pace: the first wait anywhere in the period, so that a
                # fleet made (or re-paced) at once spreads its reports evenly
                # instead of sending them in bursts a period apart.
                self._repaced = False
                wait = self.interval * random.uniform(0.0, 1.0)
            else:
                wait = self.interval * random.uniform(0.8, 1.2)
            self._wake.wait(wait)
            self._wake.clear()
            self._send()
        # close() may have come while an older report was being sent: the last
        # one (the final state, the final count) must still go out.
        self._send()

    def _send(self) -> None:
        with self._lock:
            latest = self._latest
        if latest is None or latest == self._sent:
            return
        replaced = False
        if latest.state is StreamState.STOPPED:
            if self._replaced is None:  # asked once, at the last report
                self._replaced = not self.endpoint.stop_wanted()
            replaced = self._replaced
        try:
            requested = self.endpoint.patch(status_of(latest, replaced))
            self._sent = latest
            if requested is not None and requested != self.interval:
                # The fleet's pace (operator: FleetPacer): counts this often.
                log_event(log, "progress.interval", seconds=requested)
                self.interval = requested
                self._repaced = True
        except OSError as exc:  # TimeoutError and ApiError included
            log_event(log, "progress.patch_failed", logging.WARNING, error=str(exc)[:300])
            time.sleep(0.5)
