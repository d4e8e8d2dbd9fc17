"""The `streamgrid` CLI client end to end: the installed console script run as
a subprocess against a real `streamgrid serve` and the real RTSP test camera;
and the README's "Try it" session, pasted into bash as written, with curl and
with the CLI client."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamgrid.core.grid import decode_jpeg
from testbed.camera import Camera
from testbed.processes import free_port, wait_until
from testbed.server import Server, start_server

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)  # the virtualenv the tests run in, where `streamgrid` is installed
CLI = Path(sys.executable).parent / "streamgrid"
TOKEN = "cli-t0ken-never-shown-0123456789abcdef"
HEX_ID = re.compile(r"^[0-9a-f]{16}$")


@pytest.fixture(scope="module")
def cli_server(work_dir: Path) -> Iterator[Server]:
    """A server of its own: `stop --all` and the README's session stop every stream."""
    server = start_server(work_dir, "server-cli")
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def token_server(work_dir: Path) -> Iterator[Server]:
    server = start_server(work_dir, "server-cli-token", extra_env={"STREAMGRID_API_TOKEN": TOKEN})
    yield server
    server.process.stop()


def client_env(**extra: str) -> dict[str, str]:
    """The environment without the client's own settings (a developer's shell
    may have them), plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("STREAMGRID_SERVER", "STREAMGRID_API_TOKEN", "STREAMGRID_API_TOKEN_FILE")
    }
    return {**env, **extra}


def cli(
    server: Server | str, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    base = server if isinstance(server, str) else server.base_url
    assert CLI.exists(), f"{CLI}: the console script is not installed"
    return subprocess.run(
        [str(CLI), *args],
        env=env or client_env(STREAMGRID_SERVER=base),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, (run.returncode, run.stdout, run.stderr)
    return run.stdout


def refused(run: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The exit code, and the error as one line on stderr (returned)."""
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    return lines[0]


def status_json(server: Server, stream_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(cli(server, "status", stream_id, "-o", "json")))
    return data


def wait_for_frames(server: Server, stream_id: str, n: int, timeout: float = 40) -> None:
    wait_until(
        lambda: status_json(server, stream_id)["frames_captured"] >= n,
        timeout,
        f"{n} samples of {stream_id}",
        step=0.3,
    )


def assert_grid(path: Path, size: tuple[int, int] = (900, 900)) -> None:
    image = decode_jpeg(path.read_bytes())
    assert (image.shape[1], image.shape[0]) == size


def test_a_stream_from_start_to_grid(cli_server: Server, camera: Camera, tmp_path: Path) -> None:
    stream_id = ok(cli(cli_server, "start", camera.url("/gray"), "--interval", "0.2")).strip()
    assert HEX_ID.match(stream_id), stream_id

    table = ok(cli(cli_server, "ls")).splitlines()
    assert table[0].split() == ["ID", "STATE", "FRAMES", "RUNNING", "URL"]
    assert any(line.split()[0] == stream_id for line in table[2:]), table
    listed = json.loads(ok(cli(cli_server, "ls", "--json")))["active_streams"]
    assert listed[stream_id]["url"] == camera.url("/gray")
    assert json.loads(ok(cli(cli_server, "ls", "-o", "json")))["active_streams"].keys() == {
        stream_id
    }

    wait_for_frames(cli_server, stream_id, 12)
    shown = ok(cli(cli_server, "status", stream_id))
    assert re.search(rf"^ID\s+{stream_id}\s*$", shown, re.MULTILINE), shown
    assert re.search(r"^State\s+Active\s*$", shown, re.MULTILINE), shown
    assert re.search(r"^Last sample\s+\d+\.\ds ago", shown, re.MULTILINE), shown

    grid = tmp_path / "grid.jpg"
    said = ok(cli(cli_server, "stop", stream_id, "-o", str(grid)))
    assert said.startswith(f"stopped {stream_id}: grid 900x900 JPEG"), said
    assert_grid(grid)
    # Stopped: out of ls, and a second stop answers the same grid.
    assert stream_id not in json.loads(ok(cli(cli_server, "ls", "--json")))["active_streams"]
    again = tmp_path / "again.jpg"
    ok(cli(cli_server, "stop", stream_id, "-o", str(again)))
    assert again.read_bytes() == grid.read_bytes()
    # Another layout, written to stdout.
    raw = subprocess.run(
        [str(CLI), "--server", cli_server.base_url, "stop", stream_id, "--tile-size", "100", "-o-"],
        env=client_env(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    image = decode_jpeg(raw.stdout)
    assert image.shape[:2] == (300, 300)


def test_stop_all_stops_every_stream(cli_server: Server, camera: Camera) -> None:
    ids = [
        ok(cli(cli_server, "start", camera.url(path), "--interval", "0.2")).strip()
        for path in ("/gray", "/clock")
    ]
    for stream_id in ids:
        wait_for_frames(cli_server, stream_id, 1)
    run = cli(cli_server, "stop", "--all")
    lines = ok(run).splitlines()
    assert lines[0].split() == ["ID", "RESULT"]
    assert {tuple(line.split()) for line in lines[2:]} >= {(i, "Stopped") for i in ids}
    assert json.loads(ok(cli(cli_server, "ls", "--json"))) == {"active_streams": {}}
    # Nothing left: said on stderr, nothing on stdout, and still exit 0.
    again = cli(cli_server, "stop", "--all", "--json")
    assert json.loads(ok(again)) == {"results": {}}
    empty = cli(cli_server, "ls")
    assert (ok(empty), empty.stderr.strip()) == ("", "No streams running.")


def test_refusals_exit_1_with_the_servers_reason_in_one_line(
    cli_server: Server, camera: Camera
) -> None:
    unknown = "0123456789abcdef"
    line = refused(cli(cli_server, "status", unknown))
    assert line == f"error: Stream not found with id {unknown} (HTTP 404)"
    line = refused(cli(cli_server, "stop", unknown, "-o", "/nonexistent/never-written.jpg"))
    assert line == f"error: Stream ID {unknown} not found (HTTP 404)"
    assert not Path("/nonexistent/never-written.jpg").exists()
    line = refused(cli(cli_server, "start", "http://example.com/x"))
    assert line.startswith("error: Invalid RTSP URL: ") and line.endswith("(HTTP 400)"), line
    line = refused(cli(cli_server, "start", camera.url("/gray"), "--top-k", "1000"))
    assert line.startswith("error: Invalid top_k: "), line
    port = free_port()  # nothing listens there
    line = refused(cli(f"http://127.0.0.1:{port}", "ls"))
    assert line.startswith(f"error: cannot reach http://127.0.0.1:{port}: "), line


def test_usage_errors_exit_2_in_one_line(cli_server: Server) -> None:
    for args, expected in [
        (["stop"], "error: give a stream id, or --all"),
        (["stop", "abc", "--all"], "error: --all takes no stream id, -o or grid options"),
        (["start"], "the following arguments are required: URL"),
        (["ls", "-o", "yaml"], "invalid choice: 'yaml'"),
        (["watch", "--count", "0"], "must be 1 or more"),
        (["--server", "ftp://h", "ls"], "the server must be an http:// or https:// URL"),
        (["--server", "http://me:pw@127.0.0.1:1", "ls"], "must not carry credentials"),
    ]:
        line = refused(cli(cli_server, *args), code=2)
        assert expected in line, (args, line)
        assert "pw@" not in line


def test_version_and_help() -> None:
    version = ok(cli("http://127.0.0.1:1", "--version"))
    assert re.fullmatch(r"streamgrid \d+\.\d+\.\d+\S*\n", version), version
    for command in ([], ["serve"], ["start"], ["stop"], ["watch"], ["demo-camera"]):
        text = ok(cli("http://127.0.0.1:1", *command, "--help"))
        assert "``" not in text and ":class:" not in text, command  # no raw reST


def test_a_token_is_sent_and_never_shown(token_server: Server, camera: Camera) -> None:
    line = refused(cli(token_server, "ls"))
    assert line == "error: Unauthorized: a bearer token is required (HTTP 401)"
    line = refused(cli(token_server, "ls", "--token", "wrong"))
    assert line == "error: Unauthorized: invalid bearer token (HTTP 401)"

    runs = [cli(token_server, "--token", TOKEN, "ls", "--json")]
    from_env = client_env(STREAMGRID_SERVER=token_server.base_url, STREAMGRID_API_TOKEN=TOKEN)
    start = cli(token_server, "start", camera.url("/gray"), "--interval", "0.2", env=from_env)
    stream_id = ok(start).strip()
    runs += [start, cli(token_server, "ls", env=from_env)]
    runs.append(cli(token_server, "status", stream_id, "--token", TOKEN))
    runs.append(cli(token_server, "watch", "--count", "1", env=from_env))
    wait_until(
        lambda: (
            json.loads(ok(cli(token_server, "status", stream_id, "--json", env=from_env)))[
                "frames_captured"
            ]
            >= 1
        ),
        30,
        "a sample",
    )
    runs.append(cli(token_server, "stop", stream_id, "--token", TOKEN))
    runs.append(cli(token_server, "stop", "--all", "--token", TOKEN))
    runs.append(cli(token_server, "status", "0123456789abcdef", "--token", TOKEN))
    for run in runs:
        assert TOKEN not in run.stdout + run.stderr
    assert [r.returncode for r in runs] == [0, 0, 0, 0, 0, 0, 0, 1], [r.stderr for r in runs]
    assert stream_id in runs[2].stdout
    assert TOKEN not in token_server.log_text()


def test_watch_shows_the_streams_refresh_after_refresh(cli_server: Server, camera: Camera) -> None:
    stream_id = ok(cli(cli_server, "start", camera.url("/gray"), "--interval", "0.2")).strip()
    try:
        wait_for_frames(cli_server, stream_id, 1)
        run = cli(cli_server, "watch", "--count", "2", "--every", "0.5")
        out = ok(run)
        headers = [line for line in out.splitlines() if line.split()[:2] == ["ID", "STATE"]]
        assert len(headers) == 2, out  # piped: one table per refresh
        assert headers[0].split() == ["ID", "STATE", "FRAMES", "RUNNING", "LAST", "SAMPLE", "URL"]
        rows = [line.split() for line in out.splitlines() if line.startswith(stream_id)]
        assert len(rows) == 2, out
        for row in rows:
            assert row[1] == "Active"
            assert re.fullmatch(r"\d+\.\ds", row[4]) and row[5] == "ago", row
        assert int(rows[1][2]) > int(rows[0][2]), rows  # frames went on between refreshes
        assert re.search(r"^1 stream at \d\d:\d\d:\d\d$", out, re.MULTILINE), out
    finally:
        ok(cli(cli_server, "stop", stream_id))


# -- the README's "Try it", as written ------------------------------------------
def readme_block(marker: str) -> str:
    """The shell block after ``<!-- try-it: <marker> -->`` in README.md."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- try-it: {marker}\b[^>]*-->\s*```sh\n(.*?)```", text, re.DOTALL)
    assert match, f"README.md has no block marked try-it: {marker}"
    return match.group(1)


def pasted(block: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The block run as a user pasting it would, in bash; a failing command
    (set -e) or pipeline (pipefail) fails it, so that nothing fails unseen."""
    return subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + block],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def on_test_ports(block: str, server: Server, camera: Camera) -> str:
    """The README names the default ports (8080, 8554); the test's server and
    camera have free ones. Only those host:port strings are replaced."""
    assert "127.0.0.1:8554" in block
    server_at = server.base_url.removeprefix("http://")
    return block.replace("127.0.0.1:8080", server_at).replace(
        "127.0.0.1:8554", f"{camera.host}:{camera.port}"
    )


def test_the_readme_session_with_curl_runs_as_written(
    cli_server: Server, camera: Camera, tmp_path: Path
) -> None:
    block = readme_block("curl")
    assert "127.0.0.1:8080" in block
    run = pasted(on_test_ports(block, cli_server, camera), tmp_path, client_env())
    assert run.returncode == 0, (run.stdout, run.stderr)
    ids = re.findall(r"^([0-9a-f]{16})$", run.stdout, re.MULTILINE)
    assert len(ids) == 1, run.stdout  # echo "$ID"
    assert '"Stream status: ' in run.stdout
    assert_grid(tmp_path / "grid.jpg")
    assert json.loads(run.stdout.splitlines()[-1]) == {"results": {}}  # nothing left running


def test_the_readme_session_with_the_cli_runs_as_written(
    cli_server: Server, camera: Camera, tmp_path: Path
) -> None:
    """As the README has it, from the repository's root: here a directory with
    the virtualenv linked in, so that the grid lands in the test's directory.
    The CLI's default server (127.0.0.1:8080) is the test's by STREAMGRID_SERVER."""
    (tmp_path / ".venv").symlink_to(VENV)
    block = on_test_ports(readme_block("cli"), cli_server, camera)
    run = pasted(block, tmp_path, client_env(STREAMGRID_SERVER=cli_server.base_url))
    assert run.returncode == 0, (run.stdout, run.stderr)
    stopped = re.search(r"^stopped ([0-9a-f]{16}): grid 900x900 JPEG", run.stdout, re.MULTILINE)
    assert stopped, run.stdout
    listed = [line.split() for line in run.stdout.splitlines() if line.startswith(stopped[1])]
    assert listed and listed[0][1] in ("Connecting", "Active"), run.stdout  # streamgrid ls
    assert_grid(tmp_path / "grid.jpg")
