"""Our RTSP client's pure parts: URLs, the session description, authentication."""

from __future__ import annotations

import pytest

from streamgrid.capture.rtsp import (
    Credentials,
    NoVideo,
    Unsupported,
    authorization,
    choose_challenge,
    parse_sdp,
    split_url,
)

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
        split_url("rtsps://cam.local/s")


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
    assert "nc=00000001" in header and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


def test_basic_and_unknown_schemes() -> None:
    creds = Credentials("Aladdin", "open sesame", scheme="basic")
    assert authorization(creds, "DESCRIBE", "rtsp://x/") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    with pytest.raises(Unsupported):
        choose_challenge(["Negotiate abc"])
