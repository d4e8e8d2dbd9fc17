"""Our RTSP client (capture/rtsp/) against a scripted hostile camera
(testbed/hostile_camera.py): malformed answers, redirects, refused
transports, live555's Digest; and a real worker process fed hostile bytes
after PLAY."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamgrid.capture.rtsp.errors import (
    NoVideo,
    RtspAuthError,
    RtspError,
    TransportRefused,
    Unsupported,
)
from streamgrid.capture.rtsp.session import RtspSession
from streamgrid.capture.source import SourceError, SourceFatalError, VideoSource
from testbed.hostile_camera import (
    PASSWORD,
    USER,
    BasicAuth,
    HostileCamera,
    Live555Digest,
    Script,
    answer,
    h264_clip,
    h264_sdp,
    iter_requests,
    live555_digest_fields,
    valid_answers,
    valid_camera_script,
)
from testbed.processes import ManagedProcess, wait_until

ALLOWED = (RtspError, Unsupported, NoVideo)  # RtspAuthError is an RtspError
REPO = Path(__file__).resolve().parents[2]


def answers_with(method: str, raw: bytes) -> dict[str, list[bytes]]:
    answers = valid_answers()
    answers[method] = [raw]
    return answers


def started(url: str) -> RtspSession:
    session = RtspSession(url, 5.0, 5.0)
    try:
        session.start()
    except BaseException:
        session.close()
        raise
    return session


def refusal(url: str) -> BaseException:
    """What ``start()`` raised (it must raise one of ALLOWED)."""
    session: RtspSession | None = None
    try:
        session = RtspSession(url, 3.0, 3.0)
        session.start()
    except ALLOWED as exc:
        return exc
    finally:
        if session is not None:
            session.close()
    raise AssertionError("the camera was read")


def sdp_with(old: str, new: str, codec: str = "h264") -> str:
    sdp = h264_sdp(h264_clip())
    if codec == "hevc":
        sdp = sdp.replace("H264/", "H265/").replace(
            "packetization-mode=1;", "sprop-max-don-diff=x;"
        )
    assert old in sdp
    return sdp.replace(old, new)


# -- the defects' list: each a clear, retryable reason, no crash ----------------
HOSTILE_ANSWERS = [
    pytest.param(valid_answers(sdp_with("H264/90000", "H264/0")), "clock rate", id="H264/0"),
    pytest.param(valid_answers(sdp_with("H264/90000", "H264/abc")), "clock rate", id="H264/abc"),
    pytest.param(
        valid_answers(sdp_with("RTP/AVP 96", "RTP/AVP abc")), "payload type", id="payload-abc"
    ),
    pytest.param(
        valid_answers(sdp_with("H265/90000", "H265/90000", codec="hevc")),
        "sprop-max-don-diff",
        id="hevc-don-diff-x",
    ),
    pytest.param(
        answers_with("OPTIONS", "RTSP/1.0 ²00 OK\r\nCSeq: {cseq}\r\n\r\n".encode("latin-1")),
        "not an RTSP answer",
        id="status-superscript-latin1",
    ),
    pytest.param(
        answers_with("OPTIONS", "RTSP/1.0 ²00 OK\r\nCSeq: {cseq}\r\n\r\n".encode()),
        "not an RTSP answer",
        id="status-superscript-utf8",
    ),
    pytest.param(
        answers_with("DESCRIBE", b"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Length: abc\r\n\r\n"),
        "Content-Length",
        id="content-length-abc",
    ),
    pytest.param(
        answers_with("DESCRIBE", b"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Length: -40\r\n\r\n"),
        "Content-Length",
        id="content-length-negative",
    ),
    pytest.param(
        answers_with("OPTIONS", b"RTSP/1.0 \r\n\r\n" + b"7" * 300_000),
        "not an RTSP answer",
        id="empty-status-300KB-digits",
    ),
    pytest.param(
        answers_with("OPTIONS", b"RTSP/1.0 200 OK\r\n" + b"7" * 300_000),
        "no end to its head",
        id="endless-head",
    ),
    pytest.param(
        answers_with(
            "OPTIONS", b"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n" + b"X: y\r\n" * 5000 + b"\r\n"
        ),
        "header lines",
        id="header-flood",
    ),
    pytest.param(
        answers_with("SETUP", answer("200 OK", "Transport: RTP/AVP/TCP;interleaved=0-1")),
        "without a session",
        id="no-session",
    ),
]


@pytest.mark.parametrize(("answers", "reason"), HOSTILE_ANSWERS)
def test_a_hostile_answer_is_a_retryable_error_with_a_reason(
    answers: dict[str, list[bytes]], reason: str
) -> None:
    with HostileCamera(Script(answers)) as cam:
        raised = refusal(cam.url())
    assert type(raised) is RtspError and reason in str(raised), raised
    assert len(str(raised)) < 300


def test_the_worker_sees_it_as_reconnecting_not_a_crash() -> None:
    """VideoSource (auto) turns it into a SourceError with the reason, and does
    not hand the camera to FFmpeg."""
    with HostileCamera(Script(valid_answers(sdp_with("H264/90000", "H264/0")))) as cam:
        with pytest.raises(SourceError, match="clock rate") as raised:
            VideoSource(cam.url(), open_timeout=3.0).__enter__()
        assert not isinstance(raised.value, SourceFatalError)
        assert {r.header("User-Agent") for r in cam.requests()} == {"streamgrid"}


def test_a_session_timeout_in_other_digits_is_ignored_not_fatal() -> None:
    answers = answers_with(
        "SETUP",
        answer(
            "200 OK",
            "Transport: RTP/AVP/TCP;unicast;interleaved=0-1",
            "Session: 1234;timeout=²",
        ),
    )
    with HostileCamera(valid_camera_script(answers=answers)) as cam:
        session = started(cam.url())
        try:
            assert session.session == "1234" and session.session_timeout == 60.0
        finally:
            session.close()


def test_an_invalid_host_is_an_error_not_a_crash() -> None:
    assert isinstance(refusal("rtsp://a..b:554/cam"), RtspError)


# -- redirects ------------------------------------------------------------------
def redirect(location: str, status: str = "302 Moved Temporarily") -> bytes:
    return answer(status, f"Location: {location}")


def test_a_redirect_on_the_same_host_keeps_the_credentials() -> None:
    answers = valid_answers()
    answers["DESCRIBE"] = [redirect("{base}/moved"), *answers["DESCRIBE"]]
    with HostileCamera(valid_camera_script(answers=answers, auth=Live555Digest())) as cam:
        session = started(cam.url(user=USER, password=PASSWORD))
        session.close()
        describes = [r for r in cam.requests() if r.method == "DESCRIBE"]
        assert [r.uri for r in describes] == [cam.base + "/x"] * 2 + [cam.base + "/moved"]
        assert describes[-1].header("Authorization") is not None
        assert cam.connections() == 1  # the same connection, as the host did not change


def test_a_relative_location_is_resolved_against_the_url() -> None:
    answers = valid_answers()
    answers["OPTIONS"] = [redirect("other/stream", "301 Moved Permanently"), *answers["OPTIONS"]]
    with HostileCamera(valid_camera_script(answers=answers)) as cam:
        session = started(cam.url("/cam/main"))
        session.close()
        assert [r.uri for r in cam.requests()][:3] == [
            cam.base + "/cam/main",
            cam.base + "/cam/other/stream",
            cam.base + "/cam/other/stream",
        ]


@pytest.fixture
def second_camera() -> Iterator[HostileCamera]:
    """Another host (another port of 127.0.0.1): a valid camera with Basic."""
    with HostileCamera(valid_camera_script(auth=BasicAuth())) as cam:
        yield cam


def test_a_redirect_to_another_host_sends_it_no_credentials(
    second_camera: HostileCamera,
) -> None:
    answers = answers_with("DESCRIBE", redirect(second_camera.url("/elsewhere")))
    with HostileCamera(Script(answers, auth=BasicAuth())) as first:
        raised = refusal(first.url(user=USER, password=PASSWORD))
        assert any(r.header("Authorization") for r in first.requests())  # Basic went to A
    assert isinstance(raised, RtspAuthError) and raised.status == 401
    assert "not forwarded across hosts" in str(raised) and PASSWORD not in str(raised)
    there = second_camera.requests()
    assert [r.method for r in there] == ["OPTIONS", "DESCRIBE"]
    assert all(r.header("Authorization") is None for r in there)


def test_the_worker_does_not_hand_such_a_redirect_to_ffmpeg(second_camera: HostileCamera) -> None:
    """Under auto, FFmpeg (before) followed it with Basic and the password; if it
    gets a try now, it is where our client ended, without credentials."""
    answers = answers_with("DESCRIBE", redirect(second_camera.url("/elsewhere")))
    refused = pytest.raises(SourceFatalError, match="not forwarded across hosts")
    with HostileCamera(Script(answers, auth=BasicAuth())) as first, refused as raised:
        VideoSource(first.url(user=USER, password=PASSWORD), open_timeout=3.0).__enter__()
    assert PASSWORD not in str(raised.value)
    there = second_camera.requests()
    assert there and all(r.header("Authorization") is None for r in there)
    assert PASSWORD not in "".join(r.raw for r in there)


def test_a_redirect_to_an_open_host_plays_from_there() -> None:
    with HostileCamera(valid_camera_script()) as second:
        answers = answers_with("DESCRIBE", redirect(second.url("/elsewhere"), "307 Temporary"))
        with HostileCamera(Script(answers)) as first:
            session = started(first.url(user=USER, password=PASSWORD))
            session.close()
        assert [r.method for r in second.requests()][:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]
        assert all(r.header("Authorization") is None for r in second.requests())
        assert second.connections() == 1


def test_a_redirect_loop_between_hosts_is_an_error() -> None:
    with HostileCamera(Script({})) as second, HostileCamera(Script({})) as first:
        first.script.answers = answers_with("DESCRIBE", redirect(second.url("/b")))
        second.script.answers = answers_with("DESCRIBE", redirect(first.url("/x")))
        raised = refusal(first.url())
    assert type(raised) is RtspError and "redirect loop" in str(raised), raised


@pytest.mark.parametrize(
    ("describe", "reason"),
    [
        ([redirect("{base}/x")], "redirect loop"),
        ([redirect(f"{{base}}/{n}") for n in range(2, 7)], "more than 3 redirects"),
        ([redirect("http://127.0.0.1:9/x")], "not an rtsp:// URL"),
        ([answer("302 Found")], "without a Location"),
        ([redirect("rtsp://a..b/x")], "invalid URL"),
        ([redirect("{base}/proxy", "305 Use Proxy")], "does not follow"),
    ],
)
def test_redirects_not_followed_say_why(describe: list[bytes], reason: str) -> None:
    answers = valid_answers()
    answers["DESCRIBE"] = describe
    with HostileCamera(Script(answers)) as cam:
        raised = refusal(cam.url(user=USER, password=PASSWORD))
    assert type(raised) is RtspError and reason in str(raised), raised
    assert PASSWORD not in str(raised)


def test_a_redirect_after_describe_is_an_error() -> None:
    with HostileCamera(Script(answers_with("SETUP", redirect("{base}/y")))) as cam:
        raised = refusal(cam.url())
    assert type(raised) is RtspError and raised.status == 302


# -- 461: RTSP over TCP refused ----------------------------------------------------
@pytest.mark.parametrize(
    "setup",
    [
        answer("461 Unsupported transport"),
        answer("200 OK", "Transport: RTP/AVP;unicast;client_port=5000-5001", "Session: 77"),
    ],
    ids=["461", "udp-in-answer"],
)
def test_a_refused_tcp_transport_is_its_own_exception(setup: bytes) -> None:
    with HostileCamera(Script(answers_with("SETUP", setup))) as cam:
        raised = refusal(cam.url())
    assert isinstance(raised, TransportRefused) and "refused RTSP over TCP" in str(raised)
    assert raised.status in (461, 200)


# -- live555's Digest ------------------------------------------------------------
def test_live555_takes_our_digest() -> None:
    with HostileCamera(valid_camera_script(auth=Live555Digest())) as cam:
        session = started(cam.url(user=USER, password=PASSWORD))
        session.close()
        authorized = [r for r in cam.requests() if r.header("Authorization")]
        assert {r.method for r in authorized} >= {"DESCRIBE", "SETUP", "PLAY"}
        assert all(live555_digest_fields(r.raw) is not None for r in authorized)
        assert all("algorithm" not in r.raw for r in authorized)  # not named in the challenge


def test_live555_refuses_a_wrong_password_for_good() -> None:
    with HostileCamera(valid_camera_script(auth=Live555Digest())) as cam:
        raised = refusal(cam.url(user=USER, password="wrong-pass"))
    assert isinstance(raised, RtspAuthError) and raised.status == 401
    assert "wrong-pass" not in str(raised)


# -- after PLAY: a real worker process and hostile interleaved bytes ---------------
def progress_lines(text: str) -> list[dict[str, object]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{") and '"frames_captured"' in line:
            lines.append(json.loads(line))
    return lines


@pytest.mark.slow
@pytest.mark.parametrize(
    "script",
    ["garbage-answer-after-play", "negative-length-after-play", "huge-length-after-play"],
)
def test_a_worker_survives_hostile_bytes_after_play(tmp_path: Path, script: str) -> None:
    """It reports Reconnecting with a reason, reconnects, and stops cleanly."""
    record = tmp_path / "requests.jsonl"
    argv = [sys.executable, "-m", "testbed.hostile_camera", "--script", script]
    camera = ManagedProcess(
        "hostile-camera",
        [*argv, "--record", str(record)],
        tmp_path / "camera.log",
        cwd=REPO,
    ).start()
    worker: ManagedProcess | None = None
    try:
        camera.wait_for_log("READY port=", 30)
        port = int(camera.log_text().split("READY port=")[1].split()[0])
        env = dict(os.environ)
        env.update(
            {
                "STREAMGRID_STREAM_ID": "hostile",
                "STREAMGRID_SOURCE_URL": f"rtsp://127.0.0.1:{port}/x",
                "STREAMGRID_STORE_URL": str(tmp_path / "store"),
                "STREAMGRID_DEMUXER": "rtp",
                "STREAMGRID_OPEN_TIMEOUT": "5",
                "STREAMGRID_READ_TIMEOUT": "3",
                "STREAMGRID_BACKOFF_INITIAL": "0.2",
                "STREAMGRID_BACKOFF_MAX": "1",
                "STREAMGRID_CAPTURE_INTERVAL": "0.2",
                "PYTHONUNBUFFERED": "1",
            }
        )
        worker = ManagedProcess(
            "worker", [sys.executable, "-m", "streamgrid.capture"], tmp_path / "worker.log", env=env
        ).start()

        def reconnecting() -> bool:
            assert worker is not None
            if not worker.alive():
                raise AssertionError(f"the worker exited:\n{worker.log_text()[-3000:]}")
            return any(p["state"] == "Reconnecting" for p in progress_lines(worker.log_text()))

        wait_until(reconnecting, 40, "the worker to report Reconnecting")
        reasons = [
            str(p["reason"])
            for p in progress_lines(worker.log_text())
            if p["state"] == "Reconnecting"
        ]
        assert all(reasons), reasons
        # It keeps going: a new connection to the camera, and still alive.
        wait_until(
            lambda: max((r.connection for r in iter_requests(record)), default=0) >= 2,
            20,
            "the worker to connect again",
        )
        assert worker.alive(), worker.log_text()[-3000:]
        assert worker.process is not None
        os.kill(worker.pid, signal.SIGTERM)
        stopping = time.monotonic()
        code = worker.process.wait(timeout=15)
        assert code == 0 and time.monotonic() - stopping < 10, (code, reasons)
        print(f"{script}: reconnecting because {reasons[0]!r}")
    finally:
        if worker is not None:
            worker.stop()
        camera.stop()


def test_a_refused_login_stays_refused_whatever_ffmpeg_s_try_ends_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under auto, FFmpeg gets one try after our 401. If that try fails any other
    way (a camera that stops answering after failed logins), the refusal stands:
    retrying forever would lock the account on cameras that count failures."""

    def ffmpeg_times_out(self: VideoSource) -> None:
        raise SourceError("timed out after 3.0 s (Connection timed out)")

    monkeypatch.setattr(VideoSource, "_open_ffmpeg", ffmpeg_times_out)
    refused = pytest.raises(SourceFatalError, match="401")
    with HostileCamera(valid_camera_script(auth=BasicAuth())) as cam, refused as raised:
        VideoSource(cam.url(user=USER, password="wrong-pass"), open_timeout=3.0).__enter__()
    assert "wrong-pass" not in str(raised.value)
