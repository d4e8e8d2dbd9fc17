"""The client commands of ``streamgrid``: start, ls, status, stop, watch.

They follow kubectl's and httpie's habits: the result on stdout (a table, or
JSON with ``-o json``), errors on stderr in one line, exit 0 when it worked,
1 when the server said no (or could not be reached) and 2 for a usage error.
The token (``--token`` or ``STREAMGRID_API_TOKEN``) is sent as a bearer token
and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .client import DEFAULT_SERVER, ApiError, ClientError, StreamgridClient, check_server_url
from .core.jpeg import jpeg_size

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_TIMEOUT = 60.0  # seconds; a stop waits while the grid is composed
NOTHING = "-"  # a value not known (yet)
ENV_SERVER, ENV_TOKEN, ENV_TOKEN_FILE = (
    "STREAMGRID_SERVER",
    "STREAMGRID_API_TOKEN",
    "STREAMGRID_API_TOKEN_FILE",
)

Command = Callable[[StreamgridClient, argparse.Namespace, Console], int]


class UsageError(Exception):
    """A command line that cannot be run as given (exit 2)."""


# -- pure formatting ----------------------------------------------------------
def format_duration(seconds: float) -> str:
    """``12.4s``, ``3m05s``, ``2h03m``, ``1d02h``: short, and as precise as useful."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def format_age(at: float | None, now: float) -> str:
    """How long ago a wall-clock time was (``0.4s ago``); a clock a little
    ahead of ours reads as ``0.0s ago``, never as the future."""
    if at is None:
        return NOTHING
    return f"{format_duration(max(0.0, now - at))} ago"


def state_text(state: str, reason: str = "") -> str:
    """``Active``, or ``Reconnecting (Connection refused)`` with its reason."""
    return f"{state} ({reason})" if reason else state


def format_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def start_params(
    interval: float | None = None,
    top_k: int | None = None,
    transport: str | None = None,
    tls_verify: bool = True,
    geometry: Mapping[str, int | None] | None = None,
) -> dict[str, str]:
    """The query parameters of /start for the options given (the server's
    defaults for those not given: it checks every bound)."""
    params: dict[str, str] = {}
    if interval is not None:
        params["capture_interval"] = f"{interval:g}"
    if top_k is not None:
        params["top_k"] = str(top_k)
    if transport is not None:
        params["rtsp_transport"] = transport
    if not tls_verify:
        params["tls_verify"] = "false"
    params.update(geometry_params(geometry or {}))
    return params


def geometry_params(geometry: Mapping[str, int | None]) -> dict[str, str]:
    """``grid_cols``, ``tile_size``, ``tile_width``, ``tile_height`` as given."""
    return {name: str(value) for name, value in geometry.items() if value is not None}


@dataclass(frozen=True)
class StreamRow:
    """One stream as the tables show it."""

    stream_id: str
    state: str
    frames: str
    running: str
    last_sample: str
    url: str


def stream_row(
    stream_id: str, entry: Mapping[str, Any], details: Mapping[str, Any] | None, now: float
) -> StreamRow:
    """A /list entry, with /streams/<id> details where known (reason, last sample)."""
    info = {**entry, **(details or {})}
    frames = info.get("frames_captured")
    running = info.get("running_time")
    last = info.get("last_frame_at")
    return StreamRow(
        stream_id=stream_id,
        state=state_text(str(info.get("state", NOTHING)), str(info.get("reason") or "")),
        frames=NOTHING if frames is None else str(frames),
        running=NOTHING if not isinstance(running, int | float) else format_duration(running),
        last_sample=(format_age(float(last), now) if isinstance(last, int | float) else NOTHING),
        url=str(info.get("url", "")),
    )


def streams_table(rows: Sequence[StreamRow], with_last_sample: bool = True) -> Table:
    """The streams, kubectl-style: a header, one line each, no borders. Every
    cell is plain Text: what a server sends is never read as markup."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("STATE")
    table.add_column("FRAMES", justify="right", no_wrap=True)
    table.add_column("RUNNING", justify="right", no_wrap=True)
    if with_last_sample:
        table.add_column("LAST SAMPLE", justify="right", no_wrap=True)
    table.add_column("URL", overflow="fold")
    for row in rows:
        cells: list[RenderableType] = [Text(row.stream_id)]
        if row.state.startswith("Stopping"):
            # The grid is being made (cluster: the pod flushes and composes it).
            cells.append(Spinner("dots", text=Text(row.state)))
        else:
            cells.append(Text(row.state))
        cells += [Text(row.frames), Text(row.running)]
        if with_last_sample:
            cells.append(Text(row.last_sample))
        cells.append(Text(row.url))
        table.add_row(*cells)
    return table


def details_table(details: Mapping[str, Any], now: float) -> Table:
    """One stream's /streams/<id> as ``name  value`` lines."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    row = stream_row(str(details.get("stream_id", "")), details, None, now)
    kept = details.get("kept")
    interval = details.get("capture_interval")
    lines = [
        ("ID", row.stream_id),
        ("State", row.state),
        ("URL", row.url),
        ("Frames", row.frames + (f" (kept {kept})" if kept is not None else "")),
        ("Running", row.running),
        ("Last sample", row.last_sample),
        ("Interval", NOTHING if interval is None else f"{interval:g}s"),
        ("Top K", str(details.get("top_k", NOTHING))),
    ]
    for name, value in lines:
        table.add_row(name, Text(value))
    return table


def results_table(results: Mapping[str, str]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("RESULT")
    for stream_id, result in sorted(results.items()):
        table.add_row(Text(stream_id), Text(result))
    return table


def not_stopped(results: Mapping[str, str]) -> list[str]:
    """Ids a stop-all left running (the store refused their frames, say)."""
    return sorted(stream_id for stream_id, result in results.items() if result != "Stopped")


def watch_caption(count: int, at: float, problem: str = "") -> Text:
    stamp = time.strftime("%H:%M:%S", time.localtime(at))
    text = f"{count} stream{'s' if count != 1 else ''} at {stamp}"
    return Text(f"{text}; {problem}" if problem else text)


# -- output -------------------------------------------------------------------
def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def stdout_console() -> Console:
    """Tables on stdout; piped, they keep their lines whole (no 80-column wrap)."""
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=False, width=200)
    return console


@contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs, on a terminal only."""
    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:
        yield
        return
    with console.status(Text(message)):
        yield


# -- commands -----------------------------------------------------------------
def cmd_start(client: StreamgridClient, args: argparse.Namespace, out: Console) -> int:
    params = start_params(
        args.interval,
        args.top_k,
        args.transport,
        args.tls_verify,
        {
            "grid_cols": args.grid_cols,
            "tile_size": args.tile_size,
            "tile_width": args.tile_width,
            "tile_height": args.tile_height,
        },
    )
    answer = client.start(args.url, params)
    if args.output == "json":
        print_json(answer)
    else:
        print(answer["stream_id"])
    return EXIT_OK


def cmd_ls(client: StreamgridClient, args: argparse.Namespace, out: Console) -> int:
    streams = client.list_streams()
    if args.output == "json":
        print_json({"active_streams": streams})
        return EXIT_OK
    if not streams:
        print("No streams running.", file=sys.stderr)  # as kubectl: nothing on stdout
        return EXIT_OK
    now = time.time()
    rows = [stream_row(i, streams[i], None, now) for i in sorted(streams)]
    out.print(streams_table(rows, with_last_sample=False))
    return EXIT_OK


def cmd_status(client: StreamgridClient, args: argparse.Namespace, out: Console) -> int:
    details = client.details(args.stream_id)
    if args.output == "json":
        print_json(details)
    else:
        out.print(details_table(details, time.time()))
    return EXIT_OK


def cmd_stop(client: StreamgridClient, args: argparse.Namespace, out: Console) -> int:
    if args.all:
        if args.stream_id or args.file or any(geometry_of(args).values()):
            raise UsageError("--all takes no stream id, -o or grid options")
        with progress("Stopping every stream: composing their grids..."):
            results = client.stop_all()
        if args.json:
            print_json({"results": results})
        elif results:
            out.print(results_table(results))
        else:
            print("No streams were running.", file=sys.stderr)
        left = not_stopped(results)
        if left:
            reason = results[left[0]]
            more = f" and {len(left) - 1} more" if len(left) > 1 else ""
            print(f"error: {left[0]}{more} left running: {reason}", file=sys.stderr)
            return EXIT_REFUSED
        return EXIT_OK
    if not args.stream_id:
        raise UsageError("give a stream id, or --all")
    if args.json:
        raise UsageError("--json goes with --all; a stream's stop answers its grid")
    if args.file == "-" and sys.stdout.isatty():  # as httpie: no JPEG bytes on a terminal
        raise UsageError("-o - writes the JPEG to stdout: redirect it, or give -o FILE")
    with progress(f"Stopping {args.stream_id}: composing its grid..."):
        grid = client.stop(args.stream_id, geometry_params(geometry_of(args)))
    size = jpeg_size(grid)
    shape = f"{size[0]}x{size[1]} JPEG" if size else "JPEG"
    about = f"stopped {args.stream_id}: grid {shape}, {format_size(len(grid))}"
    if args.file == "-":
        sys.stdout.buffer.write(grid)
        sys.stdout.buffer.flush()
        print(about, file=sys.stderr)
    elif args.file:
        Path(args.file).write_bytes(grid)
        print(f"{about}, written to {args.file}")
    else:
        print(f"{about} (not saved: -o FILE saves it)")
    return EXIT_OK


def geometry_of(args: argparse.Namespace) -> dict[str, int | None]:
    return {
        "grid_cols": args.grid_cols,
        "tile_size": args.tile_size,
        "tile_width": args.tile_width,
        "tile_height": args.tile_height,
    }


def watch_view(client: StreamgridClient) -> tuple[list[StreamRow], float]:
    """The rows of one refresh, and the time they are of. One GET /streams, with
    ages on the server's clock; a server without it (an older one): /list,
    then each stream's /streams/<id>."""
    try:
        now, streams = client.streams()
        rows = [stream_row(str(s.get("stream_id", "")), s, None, now) for s in streams]
        return sorted(rows, key=lambda r: r.stream_id), now
    except ApiError as exc:
        if exc.status not in (404, 405):
            raise
    listed = client.list_streams()
    now = time.time()
    rows = []
    for stream_id in sorted(listed):
        try:
            details: dict[str, Any] | None = client.details(stream_id)
        except ApiError as exc:
            if exc.status != 404:
                raise
            details = None  # stopped and gone since /list: shown as listed
        rows.append(stream_row(stream_id, listed[stream_id], details, now))
    return rows, now


def cmd_watch(client: StreamgridClient, args: argparse.Namespace, out: Console) -> int:
    """Refreshes every --every seconds until Ctrl-C (or --count refreshes). An
    unreachable server is shown and retried; a refusal (401, say) ends it."""
    rows: list[StreamRow] = []

    def render() -> RenderableType:
        problem = ""
        nonlocal rows
        try:
            rows, at = watch_view(client)
        except ApiError:
            raise
        except ClientError as exc:
            problem, at = str(exc), time.time()
        return Group(streams_table(rows), watch_caption(len(rows), at, problem))

    refreshes = 0
    if out.is_terminal:
        with Live(render(), console=out, refresh_per_second=8) as live:
            refreshes = 1
            while not args.count or refreshes < args.count:
                time.sleep(args.every)
                live.update(render())
                refreshes += 1
        return EXIT_OK
    while True:  # piped: one table per refresh, as `kubectl get -w` prints lines
        out.print(render())
        refreshes += 1
        sys.stdout.flush()
        if args.count and refreshes >= args.count:
            return EXIT_OK
        time.sleep(args.every)


# -- wiring -------------------------------------------------------------------
def read_token(args: argparse.Namespace) -> str | None:
    """--token, else $STREAMGRID_API_TOKEN, else the file $STREAMGRID_API_TOKEN_FILE
    names (the server's own variables: on one machine, one setting serves both)."""
    token = getattr(args, "token", None) or os.environ.get(ENV_TOKEN)
    if token:
        return str(token).strip()
    path = os.environ.get(ENV_TOKEN_FILE)
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise UsageError(f"cannot read {ENV_TOKEN_FILE}: {exc.strerror}") from None
    return None


def run_command(command: Command, args: argparse.Namespace) -> int:
    """Runs a client command: errors become one line on stderr and an exit code."""
    server = getattr(args, "server", None) or os.environ.get(ENV_SERVER) or DEFAULT_SERVER
    try:
        check_server_url(server)
        timeout = getattr(args, "timeout", DEFAULT_TIMEOUT)
        client = StreamgridClient(server, read_token(args), timeout=timeout)
    except (ValueError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with client:
            return command(client, args, stdout_console())
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:  # writing -o FILE
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return EXIT_OK if command is cmd_watch else EXIT_INTERRUPTED


def connection_options() -> argparse.ArgumentParser:
    """--server, --token, --timeout: taken before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server")
    group.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"the API's base URL (${ENV_SERVER}; default {DEFAULT_SERVER})",
    )
    group.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help=f"bearer token (${ENV_TOKEN}, or a file named by ${ENV_TOKEN_FILE}); never printed",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=argparse.SUPPRESS,
        metavar="S",
        help=f"seconds to wait for an answer (default {DEFAULT_TIMEOUT:g})",
    )
    return common


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def add_geometry_options(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group("grid", f"the grid's layout {what}")
    group.add_argument("--grid-cols", type=positive_int, metavar="N", help="columns")
    group.add_argument("--tile-size", type=positive_int, metavar="PX", help="square tiles")
    group.add_argument("--tile-width", type=positive_int, metavar="PX")
    group.add_argument("--tile-height", type=positive_int, metavar="PX")


def add_client_commands(sub: Any) -> None:
    """Adds start, ls, status, stop and watch to ``streamgrid``'s subcommands."""
    common = connection_options()

    def command(name: str, func: Command, help: str, description: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=help, description=description, parents=[common]
        )
        parser.set_defaults(func=lambda args: run_command(func, args))
        return parser

    p = command(
        "start",
        cmd_start,
        "start watching a camera; prints the stream's id",
        "Start watching a camera (POST /start); prints the new stream's id.",
    )
    p.add_argument("url", metavar="URL", help="the camera, rtsp:// or rtsps://")
    p.add_argument("--interval", type=positive_float, metavar="S", help="seconds between samples")
    p.add_argument("--top-k", type=positive_int, metavar="K", help="frames kept (default 9)")
    p.add_argument("--transport", choices=("tcp", "udp"), help="RTP transport (default tcp)")
    p.add_argument(
        "--no-tls-verify",
        dest="tls_verify",
        action="store_false",
        help="rtsps:// with a self-signed certificate: do not check it",
    )
    add_geometry_options(p, "(default: 300 px tiles, ceil(sqrt(K)) columns)")
    p.add_argument("-o", "--output", choices=("id", "json"), default="id", help="what to print")

    p = command(
        "ls",
        cmd_ls,
        "list the streams not stopped",
        "List the streams not stopped (GET /list), as a table or JSON.",
    )
    add_output_option(p)

    p = command(
        "status",
        cmd_status,
        "one stream in detail",
        "One stream in detail (GET /streams/<id>): state and why, frames, last sample.",
    )
    p.add_argument("stream_id", metavar="ID", help="the stream (from start or ls)")
    add_output_option(p)

    p = command(
        "stop",
        cmd_stop,
        "stop a stream and get its grid, or stop all",
        "Stop a stream (POST /stop/<id>) and get its grid, or every stream (--all).",
    )
    p.add_argument("stream_id", metavar="ID", nargs="?", help="the stream (from start or ls)")
    p.add_argument("--all", action="store_true", help="stop every stream (POST /stop)")
    p.add_argument(
        "-o", "--output", dest="file", metavar="FILE", help="write the grid here (-: stdout)"
    )
    p.add_argument("--json", action="store_true", help="with --all: the results as JSON")
    add_geometry_options(p, "(default: the stream's own)")

    p = command(
        "watch",
        cmd_watch,
        "a live table of the streams",
        "A live table of the streams: state, frames, running time, age of the last "
        "sample. Ctrl-C ends it.",
    )
    p.add_argument(
        "-n", "--every", type=positive_float, default=2.0, metavar="S", help="refresh every S s (2)"
    )
    p.add_argument(
        "--count", type=positive_int, metavar="N", help="stop after N refreshes (default: never)"
    )


def add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.add_argument(
        "--json", dest="output", action="store_const", const="json", help="same as -o json"
    )
