"""rtsps:// end to end: GStreamer's RTSP server behind TLS with a certificate
from a throwaway CA, read by our RTSP client through the TLS bridge and the C
receive loop; the certificate is checked unless the stream says otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamgrid.capture.source import SourceFatalError, VideoSource
from streamgrid.capture.tls import TlsPolicy
from testbed.camera import PASSWORD, USER, Camera, make_camera
from testbed.certs import Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(work_dir: Path) -> Certificates:
    return make_certificates(work_dir / "rtsps-certs")


@pytest.fixture(scope="module")
def tls_camera(work_dir: Path, certs: Certificates) -> Iterator[Camera]:
    cam = make_camera(
        work_dir,
        name="tls-camera",
        extra=["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)],
    ).start()
    yield cam
    cam.stop()


def rtsps_url(camera: Camera, password: str = PASSWORD, host: str = "127.0.0.1") -> str:
    return f"rtsps://{USER}:{password}@{host}:{camera.secure_port}/gray"


def pictures(source: VideoSource, wanted: int = 10) -> int:
    import threading

    decoder, got = source.decoder(), 0
    for arrival in source.arrivals(threading.Event()):
        if arrival is not None:
            got += len(decoder.decode(arrival.packet))
        if got >= wanted:
            break
    return got


def test_a_verified_camera_is_read_by_our_client(tls_camera: Camera, certs: Certificates) -> None:
    policy = TlsPolicy(ca_file=str(certs.ca))
    with VideoSource(rtsps_url(tls_camera), tls=policy, open_timeout=10) as source:
        assert source.demux == "rtp"
        assert pictures(source) >= 10


def test_a_certificate_no_trusted_ca_signed_fails_the_stream(tls_camera: Camera) -> None:
    with (
        pytest.raises(SourceFatalError, match="certificate was refused") as failed,
        VideoSource(rtsps_url(tls_camera), open_timeout=10),
    ):
        pass
    assert PASSWORD not in str(failed.value)


def test_a_certificate_for_another_name_fails_the_stream(
    tls_camera: Camera, certs: Certificates
) -> None:
    # The certificate is for 127.0.0.1 alone; "localhost" reaches the same server.
    policy = TlsPolicy(ca_file=str(certs.ca))
    with (
        pytest.raises(SourceFatalError, match="certificate was refused"),
        VideoSource(rtsps_url(tls_camera, host="localhost"), tls=policy, open_timeout=10),
    ):
        pass


def test_verification_off_accepts_a_self_signed_camera(tls_camera: Camera) -> None:
    with VideoSource(rtsps_url(tls_camera), tls=TlsPolicy(verify=False)) as source:
        assert source.demux == "rtp"
        assert pictures(source) >= 10


def test_a_wrong_password_over_tls_is_final(tls_camera: Camera, certs: Certificates) -> None:
    policy = TlsPolicy(ca_file=str(certs.ca))
    with (
        pytest.raises(SourceFatalError, match="401") as failed,
        VideoSource(rtsps_url(tls_camera, password="nope-wrong"), tls=policy, demuxer="rtp"),
    ):
        pass
    assert "nope-wrong" not in str(failed.value)


def test_ffmpeg_never_reads_rtsps_while_verification_is_on(tls_camera: Camera) -> None:
    """FFmpeg's RTSP client does not check certificates: with verification on,
    a camera our client cannot read fails with the reason, not silently."""
    with (
        pytest.raises(SourceFatalError, match="does not check the camera's certificate"),
        VideoSource(rtsps_url(tls_camera), demuxer="pyav"),
    ):
        pass
