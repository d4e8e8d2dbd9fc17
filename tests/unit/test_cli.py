"""`streamgrid`'s argument wiring: help, version, usage errors."""

from __future__ import annotations

import pytest

from streamgrid import __version__
from streamgrid.cli import build_parser, main, serve_help, shown_default
from streamgrid.gateway.settings import GatewaySettings


def help_of(*command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"streamgrid {__version__}\n"


def test_serve_help_names_every_setting_the_store_and_the_runtimes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_of("serve", capsys=capsys)
    for name in GatewaySettings.model_fields:
        if name != "kubernetes_service_host":  # Kubernetes' own variable, not ours
            assert f"STREAMGRID_{name.upper()}" in text, name
    assert "STREAMGRID_PORT=8080" in text and "STREAMGRID_INSECURE=false" in text
    for needed in ("s3://bucket", "STREAMGRID_S3_ENDPOINT_URL", "embedded", "Helm chart"):
        assert needed in text, needed
    assert text.endswith(serve_help())  # the epilog, as written


def test_help_is_plain_text_and_every_option_says_what_it_is(
    capsys: pytest.CaptureFixture[str],
) -> None:
    top = help_of(capsys=capsys)
    assert "``" not in top
    for command in ("serve", "demo-camera", "start", "ls", "status", "stop", "watch"):
        assert command in top
    camera = help_of("demo-camera", capsys=capsys)
    assert "address to serve on (default 127.0.0.1)" in camera
    assert "RTSP port (default 8554)" in camera


def test_a_usage_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["start"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("streamgrid start: error: the following arguments are required: URL")


def test_connection_options_go_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--server", "http://h:1", "--token", "t", "ls"])
    after = parser.parse_args(["ls", "--server", "http://h:1", "--token", "t"])
    assert (before.server, before.token) == (after.server, after.token) == ("http://h:1", "t")


@pytest.mark.parametrize(
    ("default", "shown"),
    [(None, ""), ("", ""), (8080, "=8080"), (False, "=false"), (3600.0, "=3600"), (["a"], "")],
)
def test_shown_defaults(default: object, shown: str) -> None:
    assert shown_default(default) == shown
