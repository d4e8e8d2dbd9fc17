"""``streamgrid serve`` (the embedded default) and ``streamgrid demo-camera``."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

CAMERA_SCRIPT = Path(__file__).parent / "camera" / "gst_camera.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, which has PyGObject (gi)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .core.logs import configure_logging, log_event
    from .gateway.app import create_app
    from .gateway.auth import auth_summary, build_authenticator, exposure_problem
    from .gateway.local import LocalBackend
    from .gateway.settings import GatewaySettings
    from .gateway.state import StateDirBusy, StreamRecords, state_dir_for

    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    if args.data_dir:
        overrides["store_url"] = str(Path(args.data_dir).resolve())
    if args.insecure:
        overrides["insecure"] = True
    settings = GatewaySettings(**overrides)  # type: ignore[arg-type]
    configure_logging("gateway", settings.log_level)
    problem = exposure_problem(settings.host, settings.authenticated, settings.insecure)
    if problem is not None:
        print(f"streamgrid serve: {problem}", file=sys.stderr)
        return 2
    try:
        static_tokens = settings.static_tokens()
    except ValueError as exc:
        print(f"streamgrid serve: {exc}", file=sys.stderr)
        return 2
    store = settings.open_store()
    store.ensure_ready()
    import logging

    log_event(
        logging.getLogger("streamgrid.gateway"),
        "gateway.starting",
        host=settings.host,
        port=settings.port,
        store=store.describe(),
        max_streams=settings.max_streams,
        auth=auth_summary(static_tokens, settings.auth_kubernetes),
    )
    if settings.backend == "kube" or settings.auth_kubernetes:
        from .operator.kubeapi import load_kube_config

        load_kube_config(settings.kubeconfig)
    authenticator = build_authenticator(
        static_tokens,
        settings.kube_namespace if settings.auth_kubernetes else None,
        settings.auth_cache_seconds,
    )
    if settings.backend == "kube":
        from .gateway.kube import KubeBackend
        from .operator.podspec import store_url_for

        # Capture pods write under <store>/<namespace>/; read from the same place.
        ns_settings = settings.model_copy(
            update={"store_url": store_url_for(settings.store_url, settings.kube_namespace)}
        )
        ns_store = ns_settings.open_store()
        app = create_app(lambda: KubeBackend(settings, ns_store), authenticator)
    else:
        try:  # before serving: a second server on the same state fails here
            records = StreamRecords(state_dir_for(settings))
        except StateDirBusy as exc:
            print(f"streamgrid serve: {exc}", file=sys.stderr)
            return 2
        app = create_app(lambda: LocalBackend(settings, store, records), authenticator)
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_config=None, timeout_graceful_shutdown=30
    )
    return 0


def demo_camera(args: argparse.Namespace) -> int:
    python = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else shutil.which("python3")
    if python is None:
        print("no python3 with GStreamer found", file=sys.stderr)
        return 1
    argv = [python, str(CAMERA_SCRIPT), "--host", args.host, "--port", str(args.port)]
    if args.secure_port:
        argv += ["--secure-port", str(args.secure_port)]
    print(
        f"demo camera: rtsp://{args.host}:{args.port}/demo (also /gray, /clock); Ctrl-C stops",
        file=sys.stderr,
    )
    try:
        os.execv(python, argv)
    except OSError as exc:
        print(f"cannot run the camera: {exc}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamgrid", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve the HTTP API, embedded runtime")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8080)")
    p.add_argument("--data-dir", help="where frames and grids go (default ./streamgrid-data)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback address without authentication (anyone may use it)",
    )
    p.set_defaults(func=serve)
    c = sub.add_parser("demo-camera", help="a live RTSP test camera (GStreamer)")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=8554)
    c.add_argument("--secure-port", type=int, help="also serve behind basic auth here")
    c.set_defaults(func=demo_camera)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
