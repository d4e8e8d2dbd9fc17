"""Our RTSP client's pure parts: URLs, the session description, authentication."""

from __future__ import annotations

import random
import re
import socket

import pytest

from streamgrid.capture.rtsp.answers import parse_answer_head, parse_session, parse_transport
from streamgrid.capture.rtsp.auth import Credentials, authorization, choose_challenge
from streamgrid.capture.rtsp.errors import NoVideo, RtspError, TransportRefused, Unsupported
from streamgrid.capture.rtsp.sdp import parse_sdp
from streamgrid.capture.rtsp.session import RtspSession
from streamgrid.capture.rtsp.urls import split_url
from testbed.hostile_camera import live555_digest_fields

GSTREAMER_SDP = """v=0
o=- 1188340656180883 1 IN IP4 127.0.0.1
s=Session streamed with GStreamer
t=0 0
a=tool:GStreamer
a=type:broadcast
a=control:*
a=range:npt=now-
m=video 0 RTP/AVP 96
c=IN IP4 0.0.0.0
a=rtpmap:96 H264/90000
a=framerate:25
a=fmtp:96 packetization-mode=1;profile-level-id=42c00d;sprop-parameter-sets={sets}
a=control:stream=0
""".format(sets="Z0LADdoFB+wBEAAAAwAQAAADAyDxQqoA,aM48gA==")


def test_a_url_loses_its_credentials_and_keeps_the_rest() -> None:
    clean, host, port, creds = split_url("rtsp://us%40er:p%3Ass@cam.local:8554/live/main?x=1")
    assert clean == "rtsp://cam.local:8554/live/main?x=1"
    assert (host, port) == ("cam.local", 8554)
    assert creds is not None and (creds.user, creds.password) == ("us@er", "p:ss")
    assert split_url("rtsp://10.0.0.2/s")[1:3] == ("10.0.0.2", 554)
    with pytest.raises(Unsupported):
        split_url("http://cam.local/s")


def test_gstreamers_description_gives_track_and_parameter_sets() -> None:
    track = parse_sdp(GSTREAMER_SDP, "rtsp://127.0.0.1:8554/demo/")
    assert track.codec == "h264" and track.payload_type == 96 and track.clock_rate == 90000
    assert track.control == "rtsp://127.0.0.1:8554/demo/stream=0"
    assert track.session_url == "rtsp://127.0.0.1:8554/demo/"
    sps, pps = track.extradata.split(b"\x00\x00\x00\x01")[1:]
    assert sps[0] & 0x1F == 7 and pps[0] & 0x1F == 8


def test_hevc_parameter_sets_in_order_and_absolute_controls() -> None:
    sdp = (
        "v=0\nm=audio 0 RTP/AVP 0\na=control:rtsp://cam/a\n"
        "m=video 0 RTP/AVP 97\na=rtpmap:97 H265/90000\n"
        "a=fmtp:97 sprop-vps=QAE;sprop-sps=QgE;sprop-pps=RAE\n"
        "a=control:rtsp://cam/track2\n"
    )
    track = parse_sdp(sdp, "rtsp://cam/")
    assert track.codec == "hevc" and track.control == "rtsp://cam/track2"
    assert track.extradata == b"\0\0\0\1\x40\x01\0\0\0\1\x42\x01\0\0\0\1\x44\x01"


@pytest.mark.parametrize(
    ("media", "error"),
    [
        ("m=video 0 RTP/AVP 26\na=rtpmap:26 JPEG/90000\n", Unsupported),
        (
            "m=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=2\n",
            Unsupported,
        ),
        (
            "m=video 0 RTP/AVP 96\na=rtpmap:96 H265/90000\na=fmtp:96 sprop-max-don-diff=2\n",
            Unsupported,
        ),
        ("m=video 0 RTP/SAVP 96\na=rtpmap:96 H264/90000\n", Unsupported),
        ("m=audio 0 RTP/AVP 0\n", NoVideo),
    ],
)
def test_what_this_client_does_not_read_is_said(media: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_sdp("v=0\n" + media, "rtsp://cam/")


def test_digest_is_preferred_and_matches_rfc_2617() -> None:
    scheme, challenge = choose_challenge(
        [
            'Basic realm="cam"',
            'Digest realm="testrealm@host.com", qop="auth,auth-int", '
            'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"',
        ]
    )
    assert scheme == "digest"
    creds = Credentials("Mufasa", "Circle Of Life", scheme=scheme, challenge=challenge)
    header = authorization(creds, "GET", "/dir/index.html", cnonce="0a4f113b")
    # RFC 2617, section 3.5: the worked example's response.
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header
    # FFmpeg's layout: every value quoted (live555 stops at the first that is
    # not), but for nc, unquoted as RFC 7616 has it, and last.
    assert 'qop="auth"' in header and 'cnonce="0a4f113b"' in header
    assert header.endswith(", nc=00000001") and "algorithm" not in header
    fields = live555_digest_fields("Authorization: " + header.removesuffix(", nc=00000001"))
    assert fields is not None and fields["response"] == "6629fae49393a05397450978507c4ef1"


def test_basic_and_unknown_schemes() -> None:
    creds = Credentials("Aladdin", "open sesame", scheme="basic")
    assert authorization(creds, "DESCRIBE", "rtsp://x/") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    with pytest.raises(Unsupported):
        choose_challenge(["Negotiate abc"])


# -- camera bytes never crash the client (they raise what the worker retries) --
H264_MEDIA = "m=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\na=control:track1\n"


@pytest.mark.parametrize(
    ("media", "reason"),
    [
        ("m=video 0 RTP/AVP 96\na=rtpmap:96 H264/0\n", "clock rate"),
        ("m=video 0 RTP/AVP 96\na=rtpmap:96 H264/abc\n", "clock rate"),
        ("m=video 0 RTP/AVP 96\na=rtpmap:96 H264/9" + "9" * 5000 + "\n", "clock rate"),
        ("m=video 0 RTP/AVP 96\na=rtpmap:96 H264/\u00b9\n", "clock rate"),
        ("m=video 0 RTP/AVP abc\na=rtpmap:96 H264/90000\n", "payload type"),
        ("m=video 0 RTP/AVP 999\na=rtpmap:999 H264/90000\n", "payload type"),
        ("m=video 0 RTP/AVP \u0669\u0666\na=rtpmap:96 H264/90000\n", "payload type"),
        (
            "m=video 0 RTP/AVP 97\na=rtpmap:97 H265/90000\na=fmtp:97 sprop-max-don-diff=x\n",
            "sprop-max-don-diff",
        ),
        (
            "m=video 0 RTP/AVP 97\na=rtpmap:97 H265/90000\na=fmtp:97 sprop-max-don-diff=\u00b2\n",
            "sprop-max-don-diff",
        ),
        (
            "m=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=\u00b9\n",
            "packetization-mode",
        ),
    ],
)
def test_a_malformed_description_is_a_retryable_error_that_says_what(
    media: str, reason: str
) -> None:
    with pytest.raises(RtspError, match=reason) as raised:
        parse_sdp("v=0\n" + media, "rtsp://cam/")
    assert len(str(raised.value)) < 200  # a reason, not the camera's whole answer


def test_a_sane_clock_rate_and_a_second_field_are_kept() -> None:
    sdp = "v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000/1\n"
    assert parse_sdp(sdp, "rtsp://cam/").clock_rate == 90000
    assert parse_sdp("v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264\n", "rtsp://cam/").clock_rate == (
        90000
    )


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"RTSP/1.0 \xc2\xb2\xc2\xb2\xc2\xb2 OK\r\nCSeq: 1", "not an RTSP answer"),
        ("RTSP/1.0 ²00 OK\r\nCSeq: 1".encode("latin-1"), "not an RTSP answer"),
        (b"RTSP/1.0 20 OK\r\nCSeq: 1", "not an RTSP answer"),
        (b"RTSP/1.0 \r\nCSeq: 1", "not an RTSP answer"),
        (b"HTTP/1.1 200 OK\r\nCSeq: 1", "not an RTSP answer"),
        (b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: abc", "Content-Length"),
        (b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: -40", "Content-Length"),
        (b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: \xb9", "Content-Length"),
        (b"RTSP/1.0 200 OK\r\nContent-Length: 99999999999999999999", "too large"),
        (b"RTSP/1.0 200 OK" + b"\r\nX: y" * 1000, "header lines"),
        (b"RTSP/1.0 200 OK\r\nX: " + b"y" * 20000, "header line"),
    ],
)
def test_a_malformed_answer_head_is_a_retryable_error(head: bytes, reason: str) -> None:
    with pytest.raises(RtspError, match=reason):
        parse_answer_head(head)


def test_a_well_formed_head_is_read_as_before() -> None:
    answer = parse_answer_head(
        b"RTSP/1.0 401 Unauthorized\r\nCSeq: 3\r\nWWW-Authenticate: Basic realm=x\r\n"
        b"www-authenticate: Digest realm=x, nonce=y\r\nContent-Length: 12"
    )
    assert (answer.status, answer.reason, answer.header("cseq")) == (401, "Unauthorized", "3")
    assert len(answer.headers["www-authenticate"]) == 2 and answer.content_length() == 12
    assert parse_answer_head(b"RTSP/1.0 200\r\nCSeq: 1").reason == ""


@pytest.mark.parametrize(
    ("value", "session", "timeout"),
    [
        ("1234;timeout=30", "1234", 30.0),
        ("1234 ; timeout=1", "1234", 2.0),  # no keep-alive storm
        ("1234;timeout=\u00b2", "1234", 60.0),  # ignored: the default
        ("1234;timeout=", "1234", 60.0),
        ("1234;timeout=" + "9" * 5000, "1234", 60.0),
        ("1234;timeout=99999999", "1234", 3600.0),
    ],
)
def test_session_timeouts_only_from_ascii_digits(value: str, session: str, timeout: float) -> None:
    assert parse_session(value) == (session, timeout)


@pytest.mark.parametrize(
    "transport",
    [
        "RTP/AVP;unicast;client_port=5000-5001",
        "RTP/AVP/TCP;unicast",
        "RTP/AVP/TCP;unicast;interleaved=\u00b2-3",
        "RTP/AVP/TCP;unicast;interleaved=256-257",
        "RTP/AVP/TCP;unicast;interleaved=1234",
        "RTP/AVP/TCP;unicast;x-interleaved=0-1",
        "",
    ],
)
def test_a_transport_without_tcp_interleaving_is_refused(transport: str) -> None:
    with pytest.raises(TransportRefused, match="refused RTSP over TCP"):
        parse_transport(transport)
    assert issubclass(TransportRefused, Unsupported)  # the caller's way to FFmpeg over UDP


def test_interleaved_channels() -> None:
    assert parse_transport("RTP/AVP/TCP;unicast;interleaved=4-5;ssrc=12AB") == 4
    assert parse_transport("rtp/avp/tcp;interleaved=0") == 0
    assert parse_transport("RTP/AVP/TCP; unicast; interleaved=2-3 ") == 2
    assert parse_transport("RTP/AVP/TCP;unicast;interleaved=0-1,RTP/AVP;unicast") == 0


def test_the_live555_checker_is_as_strict_as_live555() -> None:
    """The header this client sent before: live555 refuses it, the password right."""
    before = (
        'Authorization: Digest username="a", realm="r", nonce="n", uri="u", '
        'response="0123", algorithm=MD5\r\n'
    )
    assert live555_digest_fields(before) is None
    assert live555_digest_fields(before.replace("=MD5", '="MD5"')) is not None


# -- URLs: a host name the resolver cannot take is an error, not a crash ------
@pytest.mark.parametrize(
    "url",
    [
        "rtsp://a..b:554/cam",
        "rtsp://" + "a" * 64 + ".example/cam",
        "rtsp://host:abc/cam",
        "rtsp://[::1/cam",
        "rtsp://ho%00st/cam",
        "rtsp://\u2488.example/cam",  # IDNA cannot encode it
    ],
)
def test_a_url_the_resolver_cannot_take_is_an_rtsp_error(url: str) -> None:
    with pytest.raises(RtspError):
        RtspSession(url, 1.0, 1.0).start()


def test_an_invalid_host_is_an_rtsp_error_even_past_the_url_check() -> None:
    """Defence in depth: whatever the connection's name lookup raises on a name."""

    class Session(RtspSession):
        def _connect(self) -> socket.socket:
            raise UnicodeError("label empty or too long")

    with pytest.raises(RtspError, match="host name"):
        Session("rtsp://127.0.0.1:9/x", 1.0, 1.0).start()


# -- Digest: a header live555 takes (every value quoted) ----------------------
def test_digest_quotes_every_value_and_names_md5_only_when_asked() -> None:
    creds = Credentials(
        "admin",
        "pw",
        scheme="digest",
        challenge={"realm": "LIVE555 Streaming Media", "nonce": "abc"},
    )
    header = authorization(creds, "DESCRIBE", "rtsp://cam/x")
    assert header.startswith("Digest ") and "algorithm" not in header
    fields = live555_digest_fields("Authorization: " + header + "\r\n")
    assert fields is not None and set(fields) == {"username", "realm", "nonce", "uri", "response"}
    creds.challenge["algorithm"] = "MD5"
    header = authorization(creds, "DESCRIBE", "rtsp://cam/x")
    assert 'algorithm="MD5"' in header
    fields = live555_digest_fields("Authorization: " + header + "\r\n")
    assert fields is not None and fields["algorithm"] == "MD5"


# -- a property: mutated real answers raise only what the worker handles ------
ALLOWED = (RtspError, Unsupported, NoVideo)  # RtspAuthError is an RtspError
REAL_ANSWERS = [
    b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, "
    b"GET_PARAMETER\r\nServer: GStreamer RTSP server\r\n\r\n",
    b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n"
    b"Content-Base: rtsp://127.0.0.1:8554/demo/\r\nContent-Length: "
    + str(len(GSTREAMER_SDP.replace("\n", "\r\n"))).encode()
    + b"\r\n\r\n"
    + GSTREAMER_SDP.replace("\n", "\r\n").encode(),
    b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=1A2B\r\n"
    b"Session: qEGwG6k2Ljp1Byd1;timeout=60\r\n\r\n",
    b"RTSP/1.0 200 OK\r\nCSeq: 4\r\nRange: npt=0-\r\nSession: qEGwG6k2Ljp1Byd1\r\n"
    b"RTP-Info: url=rtsp://127.0.0.1:8554/demo/stream=0;seq=1;rtptime=2\r\n\r\n",
]
INTERESTING = [
    b"\xc2\xb2",
    b"\xb2",
    b"\xb9",
    b"-",
    b"0",
    b"abc",
    b"/0",
    b"=",
    b";",
    b":",
    b" ",
    b"\r\n",
]


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out) + 1)
        kind = rng.randrange(5)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif kind == 1:
            out[at:at] = rng.choice(INTERESTING)
        elif kind == 2:
            del out[at : at + rng.randint(1, 8)]
        elif kind == 3:
            digits = re.finditer(rb"[0-9]+", bytes(out))
            spans = [m.span() for m in digits]
            if spans:
                start, end = rng.choice(spans)
                out[start:end] = rng.choice([b"\xb2", b"-1", b"0", b"abc", b"9" * 30, b""])
        else:
            out[at:at] = bytes(out[at : at + rng.randint(1, 40)])
    return bytes(out)


FUZZ_PASSWORD = "Fuzz-s3cret"


class _Answered(RtspSession):
    """A session whose camera is one end of a socket pair, all its answers
    already written and the pair shut: the conversation never waits."""

    def __init__(self, answers: bytes) -> None:
        super().__init__(f"rtsp://viewer:{FUZZ_PASSWORD}@127.0.0.1:9/demo", 2.0, 2.0)
        self.answers = answers

    def _connect(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        theirs.sendall(self.answers)
        theirs.shutdown(socket.SHUT_WR)
        self._camera_end = theirs  # kept open: our requests need somewhere to go
        return ours


def test_mutated_real_answers_raise_only_allowed_exceptions() -> None:
    rng = random.Random(20240611)
    outcomes: dict[str, int] = {}
    for _ in range(400):
        answers = list(REAL_ANSWERS)
        target = rng.randrange(len(answers))
        answers[target] = _mutate(answers[target], rng)
        session = _Answered(b"".join(answers))
        try:
            session.start()
            outcomes["played"] = outcomes.get("played", 0) + 1
        except ALLOWED as exc:
            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
            assert FUZZ_PASSWORD not in str(exc)
            # The parsers said what was wrong; the net under them never fired.
            assert "could not be read" not in str(exc), exc
        finally:
            session.close()
            session._camera_end.close()
    assert outcomes.get("played", 0) > 50 and outcomes.get("RtspError", 0) > 50, outcomes


def test_mutated_descriptions_raise_only_allowed_exceptions() -> None:
    rng = random.Random(7)
    hevc = (
        "v=0\nm=video 0 RTP/AVP 97\na=rtpmap:97 H265/90000\n"
        "a=fmtp:97 sprop-vps=QAE;sprop-sps=QgE;sprop-pps=RAE;sprop-max-don-diff=0\n"
        "a=control:rtsp://cam/track2\n"
    )
    for sdp in (GSTREAMER_SDP, hevc):
        for _ in range(500):
            mutated = _mutate(sdp.encode(), rng).decode("utf-8", "replace")
            try:
                track = parse_sdp(mutated, "rtsp://cam/")
            except ALLOWED:
                continue
            assert 0 <= track.payload_type <= 127 and 1 <= track.clock_rate <= 10_000_000
