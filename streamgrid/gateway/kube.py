"""The cluster runtime's backend: streams are VideoStream custom resources.

``/start`` creates a Secret (when the URL carries credentials) and the
VideoStream; ``/list`` and ``/status`` read a cache fed by a watch (one LIST
at start, then a WATCH; never a LIST per request); ``/stop/<id>`` sets
``spec.state: Stopped``, waits (bounded) for the operator to report Stopped,
then returns the grid: in the stream's own geometry, the one its capture pod
stored at stop (status.grid; same name, so found as is); in another, composed
from S3. Stateless: several replicas can run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from ..core import crd
from ..core.geometry import GridGeometry
from ..core.grid_store import grid_for_stream
from ..core.logs import log_event, register_secret
from ..core.models import FrameRecord, StreamState, is_valid_stream_id
from ..core.stores.frames import FrameStore
from ..core.timestamps import parse_utc
from ..core.urls import mask_url, split_credentials, url_secrets
from ..core.watch_cache import Key, Obj, ObjectCache, resource_version, without_managed_fields
from .backend import (
    StoreUnavailable,
    StreamInfo,
    StreamNotFound,
    TooManyStreams,
    read_frame,
    read_kept_frames,
)
from .listing import ListEntry, entry_of
from .requests import BadRequest, StartRequest, check_source
from .settings import GatewaySettings

log = logging.getLogger("streamgrid.gateway")
LABELS = {crd.NAME_LABEL: crd.APP_NAME, crd.MANAGED_BY_LABEL: "streamgrid-gateway"}
STOP_PATCH = {"spec": {"state": "Stopped"}}


def _time(value: str | None) -> float | None:
    moment = parse_utc(value)
    return moment.timestamp() if moment is not None else None


def info_of(stream: Obj) -> StreamInfo:
    meta, spec, status = stream["metadata"], stream.get("spec", {}), stream.get("status") or {}
    started = _time(status.get("startedAt")) or _time(meta.get("creationTimestamp")) or time.time()
    stopped = _time(status.get("stoppedAt"))
    state = StreamState(status.get("state", "Pending"))
    finished = stopped is not None and state in (StreamState.STOPPED, StreamState.FAILED)
    end = stopped if finished and stopped is not None else time.time()
    url = (meta.get("annotations") or {}).get(crd.DISPLAY_URL_ANNOTATION) or spec["source"]["url"]
    return StreamInfo(
        stream_id=meta["name"],
        url=mask_url(url),
        state=state,
        frames_captured=int(status.get("framesCaptured", 0)),
        running_time=max(0.0, end - started),
        started_at=started,
        reason=status.get("reason", ""),
        stopped_at=stopped,
        last_frame_at=_time(status.get("lastFrameAt")),
        capture_interval=float(spec.get("captureInterval", 1)),
        top_k=int(spec.get("topK", 9)),
        details={
            "kept": int(status.get("kept", 0)),
            "store_error": failing_store(stream),
            "pod": status.get("podName"),
            "restarts": int(status.get("restarts", 0)),
            "desired_state": spec.get("state", "Running"),
        },
    )


FINISHED = (StreamState.STOPPED, StreamState.FAILED)


def list_entry_of(stream: Obj) -> ListEntry | None:
    """A stream's /list entry (listing.py), None for a stopped one: made once
    per version of the stream, by the watch, so /list is a join."""
    if (stream.get("status") or {}).get("state") == StreamState.STOPPED.value:
        return None
    info = info_of(stream)
    if info.stopped_at is not None and info.state in FINISHED:  # running time frozen
        entry = entry_of(info)
        return ListEntry(entry.stream_id, entry.head, entry.tail, info.started_at, info.stopped_at)
    return entry_of(info, live=True)


def failing_store(stream: Obj) -> str:
    """The capture pod's store error while it runs holding frames the store
    refused, else "" (once the stream stops or fails, its last word is stale)."""
    status = stream.get("status") or {}
    running = (StreamState.CONNECTING, StreamState.ACTIVE, StreamState.RECONNECTING)
    if (stream.get("spec") or {}).get("state", "Running") != "Running":
        return ""  # already being stopped: nothing to hold back
    return str(status.get("storeError") or "") if status.get("state") in running else ""


class StreamCache:
    """The namespace's VideoStreams, kept current by a LIST and a WATCH, in
    the one watch cache (core/watch_cache.py: newest resourceVersion wins,
    tombstones keep a deleted stream from coming back on a late answer).
    Beside it, kept in step by its change hook: each stream's /list entry
    and its (desired, observed) states, so /list, the stream cap and the
    gauge read no whole object."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        self.custom, self.namespace = custom, namespace
        self.objects = ObjectCache(without_managed_fields, on_change=self._changed_hook)
        self._entries: dict[str, ListEntry | None] = {}
        self._states: dict[str, tuple[str, str]] = {}  # name -> (desired, observed)
        self._generation = 0  # counts changes, for wait_for
        self._changed = threading.Condition()
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-watch", daemon=True)

    def start(self) -> StreamCache:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()

    def get(self, name: str) -> Obj | None:
        return self.objects.get((self.namespace, name))

    def states(self) -> dict[str, tuple[str, str]]:
        """Each stream's (spec.state, status.state)."""
        with self._changed:
            return dict(self._states)

    def list_entries(self) -> list[ListEntry]:
        with self._changed:
            return [entry for entry in self._entries.values() if entry is not None]

    def put(self, stream: Obj) -> None:
        """Our own writes, so a read right after a write sees it."""
        self.objects.put(stream)

    def wait_for(self, name: str, check: Callable[[Obj | None], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                seen = self._generation
            if check(self.get(name)):  # not under the condition: the cache has its own lock
                return True
            with self._changed:
                while self._generation == seen:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(min(left, 1.0))

    def _changed_hook(self, key: Key, stream: Obj | None) -> None:
        """Under the cache's lock, in the order it took the changes."""
        name = key[1]
        with self._changed:
            if stream is None:
                self._entries.pop(name, None)
                self._states.pop(name, None)
            else:
                self._entries[name] = list_entry_of(stream)
                self._states[name] = (crd.desired_state(stream), observed_state(stream))
            self._generation += 1
            self._changed.notify_all()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                listing = self.custom.list_namespaced_custom_object(
                    crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL
                )
                version = listing["metadata"]["resourceVersion"]
                self.objects.replace_all(listing["items"], resource_version(listing))
                self.ready.set()
                for event in watch.Watch().stream(
                    self.custom.list_namespaced_custom_object,
                    crd.GROUP,
                    crd.VERSION,
                    self.namespace,
                    crd.PLURAL,
                    resource_version=version,
                    timeout_seconds=240,
                ):
                    if self._stop.is_set():
                        return
                    obj = event["object"]
                    if event["type"] == "DELETED":
                        self.objects.delete(obj)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self.objects.put(obj)
                backoff = 0.5
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: our version expired, list again
                    log_event(log, "watch.error", logging.WARNING, status=exc.status)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30)
            except Exception as exc:  # noqa: BLE001 - network trouble: list again, later
                log_event(log, "watch.error", logging.WARNING, error=str(exc)[:200])
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30)


def observed_state(stream: Obj) -> str:
    return str(crd.status_of(stream).get("state") or StreamState.PENDING.value)


class KubeBackend:
    def __init__(
        self,
        settings: GatewaySettings,
        store: FrameStore,
        api_client: client.ApiClient | None = None,
    ) -> None:
        self.settings, self.store = settings, store
        self.namespace = settings.kube_namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.cache = StreamCache(self.custom, self.namespace).start()
        self.cache.ready.wait(30)

    # -- the API -------------------------------------------------------------
    def start(self, request: StartRequest) -> str:
        # 400 for a denied address; a capture pod checks host names when it connects.
        check_source(request.rtsp_url, self.settings.source_policy())
        running = sum(1 for desired, _ in self.cache.states().values() if desired == "Running")
        if running >= self.settings.max_streams:
            raise TooManyStreams(self.settings.max_streams)
        name = secrets.token_hex(8)
        url, secret_data = split_credentials(request.rtsp_url)
        register_secret(*url_secrets(request.rtsp_url))
        secret_name = crd.credentials_secret_name(name)
        if secret_data:
            self.core.create_namespaced_secret(
                self.namespace,
                client.V1Secret(
                    metadata=client.V1ObjectMeta(name=secret_name, labels=LABELS),
                    string_data=secret_data,
                    type="Opaque",
                ),
            )
        geometry = request.geometry
        spec = crd.stream_spec(
            url,
            capture_interval=request.capture_interval,
            top_k=request.top_k,
            transport=request.rtsp_transport,
            tls_verify=request.tls_verify,
            columns=geometry.cols,
            tile_width=geometry.tile_width,
            tile_height=geometry.tile_height,
            credentials_secret=secret_name if secret_data else None,
        )
        annotations = {crd.DISPLAY_URL_ANNOTATION: mask_url(request.rtsp_url)}
        body = crd.stream_object(name, spec, LABELS, annotations)
        try:
            created: Obj = self.custom.create_namespaced_custom_object(
                crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, body
            )
        except ApiException as exc:
            if secret_data:
                self._delete_secret(secret_name)
            if exc.status in (400, 422):
                raise BadRequest(f"Invalid request: {_api_message(exc)}") from None
            raise
        self.cache.put(created)
        if secret_data:  # garbage-collected with its stream
            owner = crd.owner_reference(name, created["metadata"]["uid"])
            self.core.patch_namespaced_secret(
                secret_name, self.namespace, {"metadata": {"ownerReferences": [owner]}}
            )
        log_event(
            log,
            "stream.started",
            stream_id=name,
            url=mask_url(request.rtsp_url),
            interval=request.capture_interval,
            top_k=request.top_k,
        )
        return name

    def active(self) -> list[StreamInfo]:
        return [info_of(s) for s in self._not_stopped()]

    def state_counts(self) -> dict[StreamState, int]:
        """Every stream in the cache by state (the streams gauge: a scrape
        at 10,000 streams must not build 10,000 infos)."""
        counts: dict[StreamState, int] = {}
        for _, raw in self.cache.states().values():
            try:
                state = StreamState(raw)
            except ValueError:
                continue
            counts[state] = counts.get(state, 0) + 1
        return counts

    def list_entries(self) -> list[ListEntry]:
        """From the watch cache, each entry made when its stream changed:
        /list at 10,000 streams is a join, not 10,000 info_of()."""
        return self.cache.list_entries()

    def info(self, stream_id: str) -> StreamInfo:
        return info_of(self._get(stream_id))

    def stop(self, stream_id: str, geometry: GridGeometry | None) -> bytes:
        failing = failing_store(self._get(stream_id))
        if failing:  # the pod holds frames the store refused: stopping it loses them
            raise StoreUnavailable(failing)
        stream = self._stop(stream_id)
        spec = stream.get("spec", {})
        grid = spec.get("grid") or {}
        default = GridGeometry(
            grid.get("columns"), grid.get("tileWidth", 300), grid.get("tileHeight", 300)
        )
        top_k = int(spec.get("topK", 9))
        return grid_for_stream(self.store, stream_id, top_k, geometry or default, default)

    def stop_all(self) -> dict[str, str]:
        streams = self._not_stopped()
        # Streams whose store fails keep running (see stop) and say why.
        results = {
            s["metadata"]["name"]: f"Store unavailable: {why}"
            for s in streams
            if (why := failing_store(s))
        }
        names = [s["metadata"]["name"] for s in streams if s["metadata"]["name"] not in results]
        if not names:
            return results
        with ThreadPoolExecutor(max_workers=min(32, len(names))) as pool:
            done = list(pool.map(self._stop, names))
        return results | {s["metadata"]["name"]: info_of(s).state.value for s in done}

    def close(self) -> None:
        self.cache.close()

    # -- internals -----------------------------------------------------------
    def _not_stopped(self) -> list[Obj]:
        names = [
            name
            for name, (_, state) in self.cache.states().items()
            if state != StreamState.STOPPED.value
        ]
        return [s for s in map(self.cache.get, names) if s is not None]

    def _get(self, name: str) -> Obj:
        stream = self.cache.get(name)
        if stream is None:
            try:
                stream = self.custom.get_namespaced_custom_object(
                    crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, name
                )
            except ApiException as exc:
                if exc.status in (404, 422, 400):
                    raise StreamNotFound(name) from None
                raise
            self.cache.put(stream)
        return stream

    def _stop(self, name: str) -> Obj:
        stream = self._get(name)
        if stream.get("spec", {}).get("state") != "Stopped":
            patched: Obj = self.custom.patch_namespaced_custom_object(
                crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, name, STOP_PATCH
            )
            self.cache.put(patched)

        def finished(s: Obj | None) -> bool:
            # Desired Stopped: the operator reports Stopped once the pod is gone
            # (a Failed stream too), so that is the one state to wait for.
            state = ((s or {}).get("status") or {}).get("state")
            return s is None or state == StreamState.STOPPED.value

        if not self.cache.wait_for(name, finished, self.settings.kube_stop_timeout_seconds):
            # Frames are in the store as they are kept: the grid is still right,
            # it may just miss the last sample or two.
            log_event(log, "stop.timeout", logging.WARNING, stream_id=name)
        return self.cache.get(name) or stream

    def _delete_secret(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_secret(name, self.namespace)

    # -- kept frames, from the store the capture pods write (the dashboard) ---
    def kept_frames(self, stream_id: str) -> list[FrameRecord]:
        if not is_valid_stream_id(stream_id):
            raise StreamNotFound(stream_id)
        top_k = int((self._get(stream_id).get("spec") or {}).get("topK", 9))
        return read_kept_frames(self.store, stream_id, top_k)

    def frame_jpeg(self, stream_id: str, record: FrameRecord) -> bytes | None:
        if not is_valid_stream_id(stream_id):
            raise StreamNotFound(stream_id)
        self._get(stream_id)
        return read_frame(self.store, stream_id, record)


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", exc.reason))[:300]
    except ValueError:
        return str(exc.reason)
