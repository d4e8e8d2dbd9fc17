"""The capture worker's settings (capture/settings.py, plain Python): the same
variables, rules and defaults the pydantic settings of the other components
apply, errors that name the rule and never the value, and a worker that
refuses its settings exits 2 saying why."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streamgrid.capture.sampling import DecodeMode
from streamgrid.capture.settings import CaptureSettings, Secret, SettingsError
from streamgrid.core.crd_names import WorkerExit
from streamgrid.core.settings import CommonSettings

REQUIRED = {"stream_id": "cam-1", "source_url": "rtsp://cam/x"}
SHARED = sorted(CommonSettings.model_fields)


def plain(value: Any) -> Any:
    """A setting's value with its secret, whichever class holds it."""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("STREAMGRID_") or name == "KUBERNETES_SERVICE_HOST":
            monkeypatch.delenv(name)


def test_the_shared_fields_are_common_settings_own() -> None:
    settings = CaptureSettings(**REQUIRED)
    # Every field every component has, the worker has too, with the same default.
    assert set(SHARED) <= {item.name for item in dataclasses.fields(CaptureSettings)}
    assert len(SHARED) >= 10
    common = CommonSettings()
    for name in SHARED:
        assert plain(getattr(settings, name)) == plain(getattr(common, name)), name


def test_the_shared_variables_read_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = {
        "STREAMGRID_STORE_URL": "s3://bucket/p",
        "STREAMGRID_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "STREAMGRID_S3_ACCESS_KEY_ID": "id",
        "streamgrid_s3_secret_access_key": "s3cret",  # names are case-insensitive
        "STREAMGRID_S3_REGION": "eu-west-1",
        "STREAMGRID_LOG_LEVEL": "DEBUG",
        "STREAMGRID_SOURCE_ALLOW_CIDRS": "10.0.0.0/8, 192.0.2.7",
        "STREAMGRID_SOURCE_DENY_CIDRS": "10.9.0.0/16",
        "STREAMGRID_SOURCE_DENY_LOOPBACK": "yes",
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings, common = CaptureSettings(**REQUIRED), CommonSettings()
    for name in SHARED:
        assert plain(getattr(settings, name)) == plain(getattr(common, name)), name
    assert settings.source_allow_cidrs == ["10.0.0.0/8", "192.0.2.7/32"]


def test_the_environment_gives_typed_values_and_arguments_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMGRID_STREAM_ID", "from-env")
    monkeypatch.setenv("STREAMGRID_SOURCE_URL", "rtsp://u:p@cam/x")
    monkeypatch.setenv("STREAMGRID_CAPTURE_INTERVAL", "2.5")
    monkeypatch.setenv("STREAMGRID_TOP_K", "4")
    monkeypatch.setenv("STREAMGRID_TLS_VERIFY", "false")
    monkeypatch.setenv("STREAMGRID_DECODE_MODE", "keyframe")
    monkeypatch.setenv("STREAMGRID_HEALTH_PORT", "8081")
    monkeypatch.setenv("STREAMGRID_GRID_COLUMNS", "")  # set but empty: no value
    monkeypatch.setenv("STREAMGRID_KUBE_CA_FILE", "/ca.crt")
    settings = CaptureSettings(top_k=7)
    assert (settings.stream_id, settings.capture_interval, settings.top_k) == ("from-env", 2.5, 7)
    assert settings.tls_verify is False and settings.decode_mode is DecodeMode.KEYFRAME
    assert settings.health_port == 8081 and settings.grid_columns is None
    assert settings.kube_ca_file == Path("/ca.crt")
    assert settings.source_url.get_secret_value() == "rtsp://u:p@cam/x"
    assert "u:p" not in repr(settings) and "u:p" not in str(settings.source_url)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (
            {"stream_id": "Cam.1"},
            "stream_id: String should match pattern '^[a-z0-9][a-z0-9-]{0,62}$'",
        ),
        (
            {"capture_interval": "0"},
            "capture_interval: Input should be greater than or equal to 0.04",
        ),
        ({"capture_interval": "nan"}, "capture_interval: Input should be a valid number"),
        ({"open_timeout": 0}, "open_timeout: Input should be greater than 0"),
        ({"top_k": "101"}, "top_k: Input should be less than or equal to 100"),
        ({"top_k": "9.5"}, "top_k: Input should be a valid integer"),
        ({"top_k": True}, "top_k: Input should be a valid integer"),
        ({"rtsp_transport": "http"}, "rtsp_transport: Input should be 'tcp' or 'udp'"),
        ({"demuxer": "x"}, "demuxer: Input should be 'auto', 'rtp' or 'pyav'"),
        (
            {"decode_mode": "some"},
            "decode_mode: Input should be 'auto', 'all', 'lazy' or 'keyframe'",
        ),
        ({"tls_verify": "maybe"}, "tls_verify: Input should be a valid boolean"),
        ({"health_port": "70000"}, "health_port: Input should be less than or equal to 65535"),
        (
            {"source_deny_cidrs": "10.0.0.1/8"},
            "source_deny_cidrs: Value error, '10.0.0.1/8' is not",
        ),
    ],
)
def test_a_value_that_breaks_a_rule_is_refused_naming_the_rule(
    values: dict[str, object], problem: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        CaptureSettings(**{**REQUIRED, **values})
    assert str(raised.value).startswith(problem)


def test_every_problem_is_told_at_once_and_never_a_value() -> None:
    with pytest.raises(SettingsError) as raised:
        CaptureSettings(top_k="hunter2", jpeg_quality="5")
    assert [name for name, _ in raised.value.problems] == [
        "stream_id",
        "source_url",
        "top_k",
        "jpeg_quality",
    ]
    assert "stream_id: Field required" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_an_unknown_argument_is_a_caller_bug() -> None:
    with pytest.raises(TypeError, match="unknown settings: top_kay"):
        CaptureSettings(**REQUIRED, top_kay=3)


def test_a_secret_shows_only_when_asked() -> None:
    hidden = Secret("pw")
    assert (repr(hidden), str(hidden), hidden.get_secret_value()) == (
        "Secret('**********')",
        "**********",
        "pw",
    )
    assert hidden == Secret("pw") and hidden != Secret("other")


def test_a_worker_that_refuses_its_settings_exits_2_naming_the_rule() -> None:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "STREAMGRID_STREAM_ID": "cam-1",
        "STREAMGRID_SOURCE_URL": "rtsp://admin:Pw-9931@cam/x",
        "STREAMGRID_CAPTURE_INTERVAL": "0",
    }
    run = subprocess.run(
        [sys.executable, "-m", "streamgrid.capture"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == WorkerExit.BAD_SETTINGS, run.stderr
    events = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    refused = next(e for e in events if e["event"] == "worker.bad_settings")
    assert refused["errors"] == "capture_interval: Input should be greater than or equal to 0.04"
    assert "Pw-9931" not in run.stderr + run.stdout
