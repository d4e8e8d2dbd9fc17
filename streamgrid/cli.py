"""The ``streamgrid`` command: start-up of the server and the demo camera, and
the argument wiring of the client commands (streamgrid/cli_client.py)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__

if TYPE_CHECKING:
    from pydantic import ValidationError

CAMERA_SCRIPT = Path(__file__).parent / "camera" / "gst_camera.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, which has PyGObject (gi)


def serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

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
    try:
        settings = GatewaySettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        print(f"streamgrid serve: invalid settings: {settings_error(exc)}", file=sys.stderr)
        return 2
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
        allowed_hosts=",".join(settings.allowed_hosts),
        allowed_origins=",".join(settings.allowed_origins),
    )
    if settings.backend == "kube" or settings.auth_kubernetes:
        from .core.kubeclient import load_kube_config

        load_kube_config(settings.kubeconfig)
    authenticator = build_authenticator(
        static_tokens,
        settings.kube_namespace if settings.auth_kubernetes else None,
        settings.auth_cache_seconds,
    )
    browsers = settings.browser_policy()
    if settings.backend == "kube":
        from .core.crd import store_url_for
        from .gateway.kube import KubeBackend

        # Capture pods write under <store>/<namespace>/; read from the same place.
        ns_settings = settings.model_copy(
            update={"store_url": store_url_for(settings.store_url, settings.kube_namespace)}
        )
        ns_store = ns_settings.open_store()
        app = create_app(lambda: KubeBackend(settings, ns_store), authenticator, browsers=browsers)
    else:
        try:  # before serving: a second server on the same state fails here
            records = StreamRecords(state_dir_for(settings))
        except StateDirBusy as exc:
            print(f"streamgrid serve: {exc}", file=sys.stderr)
            return 2
        app = create_app(
            lambda: LocalBackend(settings, store, records), authenticator, browsers=browsers
        )
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_config=None, timeout_graceful_shutdown=30
    )
    return 0


def settings_error(exc: ValidationError) -> str:
    """A settings model's errors in one line, each named by its variable."""
    said = []
    for error in exc.errors():
        where = "_".join(str(part) for part in error.get("loc", ()) if isinstance(part, str))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        said.append(f"STREAMGRID_{where.upper()}: {message}" if where else message)
    return "; ".join(said)


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


DESCRIPTION = (
    "Watch RTSP cameras, keep the brightest frames, get them back as a JPEG grid. "
    "The serve command runs the API; start, ls, status, stop and watch talk to it."
)

SERVE_HELP = """\
environment (STREAMGRID_<NAME>, read once at start-up; --host, --port,
--data-dir and --insecure override theirs):
{variables}

the store:
  frames and grids go to a directory (./streamgrid-data, or --data-dir), or to
  S3 with STREAMGRID_STORE_URL=s3://bucket[/prefix], STREAMGRID_S3_ENDPOINT_URL
  (MinIO, SeaweedFS; AWS if unset), STREAMGRID_S3_ACCESS_KEY_ID and
  STREAMGRID_S3_SECRET_ACCESS_KEY; the stream records then need
  STREAMGRID_STATE_DIR (else ./streamgrid-state).

web pages:
  every page the browser opens can reach a server on 127.0.0.1, so the server
  answers only to Host names it is known by (IP literals, localhost, this
  machine's name, and STREAMGRID_ALLOWED_HOSTS: comma list, *.example.com
  patterns): a DNS-rebinding page gets a 421 and reads nothing. Writes from a
  browser (POST) must come from the server's own origin (its dashboard) or one
  in STREAMGRID_ALLOWED_ORIGINS (scheme://host[:port], comma list; CORS is open
  to exactly these): a cross-site form or fetch gets a 403 and changes nothing.
  curl, the CLI and scripts send no Origin and are served as they are.

runtimes:
  embedded (this command, the default): one capture worker process per stream
    on this machine.
  cluster: the Helm chart (charts/streamgrid) runs this gateway with
    STREAMGRID_BACKEND=kube: each stream is a VideoStream resource, and an
    operator runs a capture pod per stream, writing to S3 (README: Kubernetes).

capture workers inherit this environment: their tuning (STREAMGRID_DEMUXER,
STREAMGRID_DECODE_MODE, STREAMGRID_DECODE_THREADS, STREAMGRID_OPEN_TIMEOUT,
STREAMGRID_READ_TIMEOUT, STREAMGRID_JPEG_QUALITY, STREAMGRID_TLS_CA_FILE, ...)
is in streamgrid/capture/settings.py.
"""


def settings_variables() -> list[str]:
    """Every STREAMGRID_* setting of the server, with its default, from the
    settings model itself (so that the help cannot fall behind it)."""
    from .gateway.settings import GatewaySettings

    shown = []
    for name, field in GatewaySettings.model_fields.items():
        if field.validation_alias is not None:  # not a STREAMGRID_ variable
            continue
        shown.append(f"STREAMGRID_{name.upper()}{shown_default(field.default)}")
    return shown


def shown_default(default: object) -> str:
    """``=8080``, ``=false``; nothing for no default or a list (see README)."""
    if default is None or default == "" or isinstance(default, list | tuple):
        return ""
    if isinstance(default, bool):
        return f"={str(default).lower()}"
    if isinstance(default, float):
        return f"={default:g}"
    return f"={default}"


def serve_help() -> str:
    listed = textwrap.fill(
        "  ".join(settings_variables()),
        width=78,
        initial_indent="  ",
        subsequent_indent="  ",
        break_on_hyphens=False,
    )
    return SERVE_HELP.format(variables=listed)


class Parser(argparse.ArgumentParser):
    """Errors in one line on stderr, exit 2 (usage); help formatted as written;
    an epilog made only when help is asked for (``later_epilog``)."""

    later_epilog: Callable[[], str] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if isinstance(kwargs.get("description"), str):  # raw, so wrapped here
            kwargs["description"] = textwrap.fill(kwargs["description"], width=78)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        if self.epilog is None and self.later_epilog is not None:
            self.epilog = self.later_epilog()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    from .cli_client import add_client_commands, connection_options

    parser = Parser(prog="streamgrid", description=DESCRIPTION, parents=[connection_options()])
    parser.add_argument("--version", action="version", version=f"streamgrid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "serve",
        help="serve the HTTP API (embedded runtime)",
        description="Serve the HTTP API on 127.0.0.1:8080, the embedded runtime: "
        "a capture worker per stream on this machine.",
    )
    p.later_epilog = serve_help  # imports the settings model: only for --help
    p.add_argument("--host", help="bind address (default 127.0.0.1; STREAMGRID_HOST)")
    p.add_argument("--port", type=int, help="port (default 8080; STREAMGRID_PORT)")
    p.add_argument(
        "--data-dir", help="where frames and grids go (default ./streamgrid-data; a directory)"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback address without authentication (anyone may use it)",
    )
    p.set_defaults(func=serve)
    c = sub.add_parser(
        "demo-camera",
        help="a live RTSP test camera (GStreamer)",
        description="A live H.264 RTSP camera from GStreamer's RTSP server, to try "
        "streamgrid with: rtsp://HOST:PORT/demo, /gray and /clock. Needs Debian's "
        "GStreamer packages (make demo-camera installs them).",
    )
    c.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    c.add_argument("--port", type=int, default=8554, help="RTSP port (default 8554)")
    c.add_argument("--secure-port", type=int, help="also serve behind basic auth here")
    c.set_defaults(func=demo_camera)
    add_client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
