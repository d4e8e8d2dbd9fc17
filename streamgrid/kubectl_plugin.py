"""``kubectl streamgrid``: VideoStreams from the command line, without the gateway.

kubectl runs any ``kubectl-streamgrid`` on PATH as ``kubectl streamgrid``
(the console script of this distribution). It uses the kubeconfig as kubectl
does (``--kubeconfig``, ``--context``, ``-n``; else $KUBECONFIG and the
context's namespace):

- ``ls``: the namespace's streams, as a table;
- ``status NAME``: one stream on one screen: state, conditions, pod and
  node, counts and last sample, store prefix, grid, latest Events;
- ``start NAME --url URL``: creates a VideoStream; credentials in the URL go
  to a Secret ``NAME-credentials``, as the gateway does, never into the spec;
- ``stop NAME [-o FILE]``: sets ``spec.state: Stopped``, waits for Stopped,
  and with ``-o`` fetches the grid;
- ``grid NAME -o FILE``: the grid of a stopped stream, through the gateway
  (``--gateway URL``, with the kubeconfig's token) or straight from the store
  (``--s3-endpoint`` and the S3 credentials in the environment): the grid the
  capture pod stored at stop (``status.grid``), else composed from the frames.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .core import crd
from .core.crd import GROUP, PLURAL, VERSION
from .core.timestamps import parse_utc
from .core.urls import mask_secrets, mask_url, split_credentials

Obj = dict[str, Any]
EXIT_OK, EXIT_ERROR = 0, 1
MANAGED_BY = "streamgrid-kubectl"


class PluginError(RuntimeError):
    """What went wrong, in words for the user (printed as ``error: ...``)."""


# -- pure parts ---------------------------------------------------------------
@dataclass(frozen=True)
class StartOptions:
    name: str
    url: str
    interval: float = 1.0
    top_k: int = 9
    transport: str = "tcp"
    tls_verify: bool = True
    columns: int | None = None
    tile_width: int = 300
    tile_height: int = 300


def stream_body(options: StartOptions) -> tuple[Obj, dict[str, str]]:
    """(the VideoStream, the credentials Secret's data, empty when the URL has none)."""
    url, secret_data = split_credentials(options.url)
    spec = crd.stream_spec(
        url,
        capture_interval=options.interval,
        top_k=options.top_k,
        transport=options.transport,
        tls_verify=options.tls_verify,
        columns=options.columns,
        tile_width=options.tile_width,
        tile_height=options.tile_height,
        credentials_secret=crd.credentials_secret_name(options.name) if secret_data else None,
    )
    body = crd.stream_object(
        options.name,
        spec,
        {crd.NAME_LABEL: crd.APP_NAME, crd.MANAGED_BY_LABEL: MANAGED_BY},
        {crd.DISPLAY_URL_ANNOTATION: mask_url(options.url)},
    )
    return body, secret_data


def age(created: str | None, now: datetime) -> str:
    """kubectl's short age, roughly: 90s, 45m, 30h, 12d."""
    moment = parse_utc(created)
    if moment is None:
        return "<unknown>"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def table(streams: Sequence[Obj], now: datetime) -> str:
    """The streams as ``kubectl get`` prints them: aligned columns, a header."""
    rows = [["NAME", "STATE", "DESIRED", "FRAMES", "INTERVAL", "TOPK", "GRID", "AGE"]]
    for stream in sorted(streams, key=lambda s: str(s["metadata"]["name"])):
        spec, status = stream.get("spec") or {}, stream.get("status") or {}
        grid = status.get("grid") or {}
        rows.append(
            [
                stream["metadata"]["name"],
                status.get("state") or "<none>",
                spec.get("state", "Running"),
                str(status.get("framesCaptured", 0)),
                f"{float(spec.get('captureInterval', 1)):g}",
                str(spec.get("topK", 9)),
                f"{grid['width']}x{grid['height']}" if grid else "<none>",
                age(stream["metadata"].get("creationTimestamp"), now),
            ]
        )
    return aligned(rows)


def status_screen(
    stream: Obj, pod: Obj | None, events: Sequence[Obj], now: datetime, limit: int = 8
) -> str:
    """One stream on one screen, as ``kubectl cnpg status``: what it is,
    its conditions, its pod and node, its counts and last sample, where its
    data is, its grid, and its latest Events."""
    meta, spec = stream["metadata"], stream.get("spec") or {}
    status = stream.get("status") or {}
    source = spec.get("source") or {}
    url = (meta.get("annotations") or {}).get(crd.DISPLAY_URL_ANNOTATION) or source.get("url", "")
    last = parse_utc(status.get("lastFrameAt"))
    lines = [
        f"VideoStream {meta.get('namespace')}/{meta['name']}",
        f"  State:        {status.get('state') or '<none>'} (desired {crd.desired_state(stream)})"
        + (f": {status['reason']}" if status.get("reason") else ""),
        f"  Source:       {mask_url(url)}",
        f"  Sampling:     every {float(spec.get('captureInterval', 1)):g} s, "
        f"keeping the {int(spec.get('topK', 9))} brightest",
        f"  Frames:       {int(status.get('framesCaptured', 0))} captured, "
        f"{int(status.get('kept', 0))} kept",
        f"  Last sample:  {age(status.get('lastFrameAt'), now) + ' ago' if last else '<none>'}",
        f"  Restarts:     {int(status.get('restarts', 0))}",
        f"  Store:        {(status.get('store') or {}).get('url') or '<none>'}",
    ]
    if status.get("storeError"):
        lines.append(f"  Store error:  {mask_secrets(str(status['storeError']))}")
    grid = status.get("grid") or {}
    lines.append(
        f"  Grid:         {grid.get('width')}x{grid.get('height')}, {grid.get('frames')} frames, "
        f"{grid.get('url')}"
        if grid
        else "  Grid:         <none> (made when the stream stops)"
    )
    if pod is None:
        lines.append(f"  Pod:          <none> ({status.get('podName') or 'none expected'})")
    else:
        pod_meta, pod_status = pod["metadata"], pod.get("status") or {}
        ready = all(c.get("ready") for c in pod_status.get("containerStatuses") or [])
        lines.append(
            f"  Pod:          {pod_meta['name']} {pod_status.get('phase', '?')}"
            f"{', ready' if ready and pod_status.get('containerStatuses') else ''}"
            f" on {(pod.get('spec') or {}).get('nodeName') or '<unscheduled>'}, "
            f"age {age(pod_meta.get('creationTimestamp'), now)}"
        )
    lines += ["", "Conditions:"]
    rows = [["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]]
    for c in sorted(status.get("conditions") or [], key=lambda c: str(c.get("type"))):
        rows.append(
            [
                str(c.get("type")),
                str(c.get("status")),
                str(c.get("reason") or ""),
                age(c.get("lastTransitionTime"), now),
                mask_secrets(str(c.get("message") or ""))[:80],
            ]
        )
    lines += ["  " + line for line in aligned(rows).splitlines()]
    lines += ["", "Events:"]
    latest = sorted(events, key=lambda e: str(e.get("lastTimestamp") or ""), reverse=True)[:limit]
    rows = [["LAST SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"]]
    for e in latest:
        rows.append(
            [
                age(e.get("lastTimestamp"), now),
                str(e.get("type")),
                str(e.get("reason")),
                str(e.get("count") or 1),
                mask_secrets(str(e.get("message") or ""))[:100],
            ]
        )
    lines += ["  " + line for line in aligned(rows).splitlines()] if latest else ["  <none>"]
    return "\n".join(lines)


def aligned(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def not_stopped(stream: Obj) -> str | None:
    """Why there is no grid yet, or None when the stream is Stopped."""
    name = stream["metadata"]["name"]
    state = (stream.get("status") or {}).get("state") or "Pending"
    if state == "Stopped":
        return None
    if (stream.get("spec") or {}).get("state") == "Stopped":
        return f"{name} is still stopping (state {state}): try again in a moment"
    return (
        f"{name} is still running (state {state}): stop it first (kubectl streamgrid stop {name})"
    )


def split_object_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b/c.jpg`` -> (``s3://bucket/a/b``, ``c.jpg``): a store and a key in it."""
    folder, _, key = url.rstrip("/").rpartition("/")
    if not folder or "://" not in url or folder.endswith(":/"):
        raise PluginError(f"not an object URL: {url!r}")
    return folder, key


# -- the cluster --------------------------------------------------------------
@dataclass
class Kube:
    custom: Any  # kubernetes.client.CustomObjectsApi
    core: Any  # kubernetes.client.CoreV1Api
    namespace: str
    token: str | None  # the kubeconfig user's bearer token, for the gateway

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None, namespace: str | None) -> Kube:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        try:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        except (ConfigException, OSError) as exc:
            raise PluginError(f"kubeconfig: {exc}") from None
        chosen = next((c for c in contexts if c["name"] == context), active) if context else active
        namespace = namespace or (chosen or {}).get("context", {}).get("namespace") or "default"
        if configuration.refresh_api_key_hook is not None:  # exec and OIDC users: fetch it now
            configuration.refresh_api_key_hook(configuration)
        # The client keeps the user's token as "Bearer <token>" under this key.
        authorization = str(configuration.api_key.get("BearerToken") or "")
        token = authorization.removeprefix("Bearer ").strip() or None
        api = client.ApiClient(configuration)
        return cls(client.CustomObjectsApi(api), client.CoreV1Api(api), namespace, token)

    def get(self, name: str) -> Obj:
        from kubernetes.client.exceptions import ApiException

        try:
            stream: Obj = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except ApiException as exc:
            raise PluginError(api_message(exc, f"videostream {name}")) from None
        return stream

    def status_of(self, name: str) -> tuple[Obj, Obj | None, list[Obj]]:
        """The stream, its capture pod (None when it has none) and its Events."""
        from kubernetes.client.exceptions import ApiException

        stream = self.get(name)
        try:
            pod: Obj | None = json.loads(
                self.core.read_namespaced_pod(
                    crd.capture_pod_name(name), self.namespace, _preload_content=False
                ).data
            )
        except ApiException as exc:
            if exc.status != 404:
                raise PluginError(api_message(exc, f"pod {crd.capture_pod_name(name)}")) from None
            pod = None
        try:
            listing = json.loads(
                self.core.list_namespaced_event(
                    self.namespace,
                    field_selector=f"involvedObject.name={name},involvedObject.kind={crd.KIND}",
                    _preload_content=False,
                ).data
            )
        except ApiException as exc:
            raise PluginError(api_message(exc, "events")) from None
        return stream, pod, list(listing.get("items") or [])


def api_message(exc: Any, what: str) -> str:
    if exc.status == 404:
        return f"{what} not found"
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def start(kube: Kube, options: StartOptions) -> None:
    from kubernetes.client.exceptions import ApiException

    body, secret_data = stream_body(options)
    secret = crd.credentials_secret_name(options.name)
    try:
        if secret_data:
            kube.core.create_namespaced_secret(
                kube.namespace,
                {
                    "metadata": {"name": secret, "labels": body["metadata"]["labels"]},
                    "stringData": secret_data,
                    "type": "Opaque",
                },
            )
        try:
            created: Obj = kube.custom.create_namespaced_custom_object(
                GROUP, VERSION, kube.namespace, PLURAL, body
            )
        except ApiException:
            if secret_data:  # no stream: its Secret must not stay behind
                kube.core.delete_namespaced_secret(secret, kube.namespace)
            raise
        if secret_data:  # garbage-collected with its stream
            owner = crd.owner_reference(options.name, created["metadata"]["uid"])
            kube.core.patch_namespaced_secret(
                secret, kube.namespace, {"metadata": {"ownerReferences": [owner]}}
            )
    except ApiException as exc:
        raise PluginError(api_message(exc, f"videostream {options.name}")) from None


def stop(kube: Kube, name: str, timeout: float) -> Obj:
    """Sets spec.state Stopped and waits until the operator reports Stopped."""
    from kubernetes.client.exceptions import ApiException

    try:
        kube.custom.patch_namespaced_custom_object(
            GROUP, VERSION, kube.namespace, PLURAL, name, {"spec": {"state": "Stopped"}}
        )
    except ApiException as exc:
        raise PluginError(api_message(exc, f"videostream {name}")) from None
    deadline = time.monotonic() + timeout
    while True:
        stream = kube.get(name)
        if not_stopped(stream) is None:
            return stream
        if time.monotonic() >= deadline:
            state = (stream.get("status") or {}).get("state")
            raise PluginError(f"{name} not Stopped after {timeout:g} s (state {state})")
        time.sleep(0.5)


@dataclass(frozen=True)
class StoreAccess:
    endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str = "us-east-1"


def grid_from_gateway(gateway: str, stream: Obj, token: str | None) -> bytes:
    """The gateway's /stop of a stopped stream: its stored grid, as is."""
    name = stream["metadata"]["name"]
    request = urllib.request.Request(
        f"{gateway.rstrip('/')}/stop/{quote(name, safe='')}",
        method="POST",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    # No redirects: the token goes to the gateway named, and nowhere else.
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=120) as reply:
            return bytes(reply.read())
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise PluginError(
                f"gateway: {exc.code} redirect not followed (the token stays with "
                f"{mask_url(gateway)}); pass the gateway's final URL"
            ) from None
        text = exc.read(1000).decode(errors="replace").strip()
        raise PluginError(f"gateway: {exc.code} {text}") from None
    except OSError as exc:
        raise PluginError(f"gateway {mask_url(gateway)}: {mask_secrets(str(exc))}") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx surfaces as an HTTPError


def grid_from_store(stream: Obj, access: StoreAccess) -> bytes:
    """The grid the capture pod stored (status.grid), else composed from the
    stream's frames under status.store.url (and stored, as the gateway does)."""
    from .core.geometry import GridGeometry
    from .core.grid_store import GridFailed, NoFramesCaptured, StoreUnavailable, grid_for_stream
    from .core.stores.base import StoreError, store_error_text
    from .core.stores.factory import open_object_store
    from .core.stores.frames import FrameStore

    def objects(url: str) -> Any:
        return open_object_store(
            url,
            s3_endpoint_url=access.endpoint,
            s3_access_key_id=access.access_key_id,
            s3_secret_access_key=access.secret_access_key,
            s3_region=access.region,
        )

    name, spec = stream["metadata"]["name"], stream.get("spec") or {}
    status = stream.get("status") or {}
    stored = (status.get("grid") or {}).get("url")
    try:
        if stored:
            folder, key = split_object_url(stored)
            data = objects(folder).get(key)
            if data is not None:
                return bytes(data)
        store_url = (status.get("store") or {}).get("url")
        if not store_url:
            raise PluginError(f"{name} has no status.store.url: has the operator seen it?")
        namespace_store, stream_id = split_object_url(store_url)
        grid = spec.get("grid") or {}
        geometry = GridGeometry(
            grid.get("columns"), grid.get("tileWidth", 300), grid.get("tileHeight", 300)
        )
        top_k = int(spec.get("topK", 9))
        store = FrameStore(objects(namespace_store))
        return grid_for_stream(store, stream_id, top_k, geometry, geometry)
    except NoFramesCaptured:
        raise PluginError(f"{name} captured no frames: there is no grid") from None
    except (GridFailed, StoreUnavailable) as exc:
        raise PluginError(f"store: {exc}") from None
    except PluginError:
        raise
    except (StoreError, ValueError) as exc:  # the store's, or a grid too large (GridTooLarge)
        raise PluginError(f"store: {store_error_text(exc)}") from None


def fetch_grid(kube: Kube, stream: Obj, args: argparse.Namespace) -> bytes:
    why = not_stopped(stream)
    if why is not None:
        raise PluginError(why)
    gateway = args.gateway or os.environ.get("STREAMGRID_GATEWAY_URL")
    if gateway:
        token = args.token or os.environ.get("STREAMGRID_API_TOKEN") or kube.token
        return grid_from_gateway(gateway, stream, token)
    return grid_from_store(
        stream,
        StoreAccess(
            args.s3_endpoint or os.environ.get("STREAMGRID_S3_ENDPOINT_URL"),
            os.environ.get("STREAMGRID_S3_ACCESS_KEY_ID"),  # else boto3's AWS_* and profiles
            os.environ.get("STREAMGRID_S3_SECRET_ACCESS_KEY"),
            args.s3_region,
        ),
    )


def write_grid(data: bytes, output: str) -> None:
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    Path(output).write_bytes(data)


# -- the command line ---------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kubectl streamgrid", description="VideoStreams without the gateway."
    )
    top.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG, ~/.kube/config")
    top.add_argument("--context", default=None)
    top.add_argument("-n", "--namespace", default=None, help="default: the context's")
    commands = top.add_subparsers(dest="command", required=True)

    def grid_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--gateway", help="the gateway's URL (env STREAMGRID_GATEWAY_URL)")
        command.add_argument("--token", help="for the gateway; default: the kubeconfig's")
        command.add_argument("--s3-endpoint", help="env STREAMGRID_S3_ENDPOINT_URL")
        command.add_argument("--s3-region", default="us-east-1")

    commands.add_parser("ls", help="list the namespace's streams")
    show = commands.add_parser("status", help="one stream on one screen: state, pod, events")
    show.add_argument("name")
    begin = commands.add_parser("start", help="create a VideoStream")
    begin.add_argument("name")
    begin.add_argument("--url", required=True, help="rtsp:// URL; credentials go to a Secret")
    begin.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    begin.add_argument("--top-k", type=int, default=9)
    begin.add_argument("--transport", choices=["tcp", "udp"], default="tcp")
    begin.add_argument("--no-tls-verify", action="store_true")
    begin.add_argument("--columns", type=int, default=None)
    begin.add_argument("--tile-width", type=int, default=300)
    begin.add_argument("--tile-height", type=int, default=300)
    end = commands.add_parser("stop", help="stop a stream and wait for Stopped")
    end.add_argument("name")
    end.add_argument("-o", "--output", help="then write its grid here (- for stdout)")
    end.add_argument("--timeout", type=float, default=120.0)
    grid_options(end)
    grid = commands.add_parser("grid", help="write a stopped stream's grid")
    grid.add_argument("name")
    grid.add_argument("-o", "--output", required=True, help="a file, or - for stdout")
    grid_options(grid)
    return top


def run(args: argparse.Namespace) -> int:
    kube = Kube.connect(args.kubeconfig, args.context, args.namespace)
    if args.command == "ls":
        from kubernetes.client.exceptions import ApiException

        try:
            listing = kube.custom.list_namespaced_custom_object(
                GROUP, VERSION, kube.namespace, PLURAL
            )
        except ApiException as exc:
            raise PluginError(api_message(exc, "videostreams")) from None
        items = listing.get("items") or []
        if not items:
            print(f"No videostreams found in {kube.namespace} namespace.", file=sys.stderr)
        else:
            print(table(items, datetime.now(UTC)))
    elif args.command == "status":
        print(status_screen(*kube.status_of(args.name), datetime.now(UTC)))
    elif args.command == "start":
        options = StartOptions(
            args.name,
            args.url,
            args.interval,
            args.top_k,
            args.transport,
            not args.no_tls_verify,
            args.columns,
            args.tile_width,
            args.tile_height,
        )
        start(kube, options)
        print(f"videostream.{GROUP}/{args.name} created")
    elif args.command == "stop":
        stream = stop(kube, args.name, args.timeout)
        print(f"videostream.{GROUP}/{args.name} stopped", file=sys.stderr)
        if args.output:
            write_grid(fetch_grid(kube, stream, args), args.output)
    elif args.command == "grid":
        write_grid(fetch_grid(kube, kube.get(args.name), args), args.output)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
