"""The TLS bridge for rtsps:// (capture/tls.py) against a real TLS server
(Python's ssl, OpenSSL) with certificates from a throwaway CA."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamgrid.capture.tls import TlsPolicy, TlsVerifyError, connect_tls
from testbed.certs import Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


class EchoServer:
    """A TLS server that echoes what it gets, upper-cased, then sends a large
    burst when asked (more than one TLS record, more than one recv())."""

    def __init__(self, certs: Certificates) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certs.cert, certs.key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(raw,), daemon=True).start()

    def _client(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as conn:
                while data := conn.recv(4096):
                    if data == b"burst":
                        conn.sendall(bytes(range(256)) * 4096)  # 1 MiB
                    else:
                        conn.sendall(data.upper())
        except (OSError, ssl.SSLError):
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def server(certs: Certificates) -> Iterator[EchoServer]:
    srv = EchoServer(certs)
    yield srv
    srv.close()


def connect(server: EchoServer, policy: TlsPolicy, host: str = "127.0.0.1") -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return connect_tls(raw, host, policy, timeout=5)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(5)
    got = b""
    while len(got) < size:
        chunk = sock.recv(size - len(got))
        assert chunk, "closed early"
        got += chunk
    return got


def test_plain_bytes_both_ways_through_a_verified_connection(
    server: EchoServer, certs: Certificates
) -> None:
    plain = connect(server, TlsPolicy(ca_file=str(certs.ca)))
    plain.sendall(b"options rtsp://x RTSP/1.0\r\n\r\n")
    assert read_exactly(plain, 29) == b"OPTIONS RTSP://X RTSP/1.0\r\n\r\n"
    plain.sendall(b"burst")
    assert read_exactly(plain, 1 << 20) == bytes(range(256)) * 4096
    plain.close()


def test_a_certificate_no_trusted_ca_signed_is_refused(server: EchoServer) -> None:
    with pytest.raises(TlsVerifyError, match=r"certificate was refused.*(self.signed|issuer)"):
        connect(server, TlsPolicy())  # the system's CAs only


def test_a_certificate_for_another_name_is_refused(server: EchoServer, certs: Certificates) -> None:
    with pytest.raises(TlsVerifyError, match=r"certificate was refused.*match"):
        connect(server, TlsPolicy(ca_file=str(certs.ca)), host="camera.example")


def test_verification_can_be_turned_off(server: EchoServer) -> None:
    plain = connect(server, TlsPolicy(verify=False), host="camera.example")
    plain.sendall(b"ping")
    assert read_exactly(plain, 4) == b"PING"
    plain.close()


def test_closing_our_end_ends_the_bridge(server: EchoServer, certs: Certificates) -> None:
    before = {t for t in threading.enumerate() if t.name == "tls-bridge"}
    plain = connect(server, TlsPolicy(ca_file=str(certs.ca)))
    bridges = {t for t in threading.enumerate() if t.name == "tls-bridge"} - before
    assert len(bridges) == 1
    plain.close()
    (bridge,) = bridges
    bridge.join(3)
    assert not bridge.is_alive()


def test_a_server_that_hangs_up_closes_our_end(certs: Certificates) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)

    def hang_up() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as conn:
            conn.sendall(b"bye")

    threading.Thread(target=hang_up, daemon=True).start()
    raw = socket.create_connection(listener.getsockname(), timeout=5)
    plain = connect_tls(raw, "127.0.0.1", TlsPolicy(ca_file=str(certs.ca)), timeout=5)
    assert read_exactly(plain, 3) == b"bye"
    assert plain.recv(10) == b""  # end of stream, not a hang
    plain.close()
    listener.close()


def test_a_ca_file_that_cannot_be_loaded_is_final(server: EchoServer, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(TlsVerifyError, match="cannot load the CA file"):
        connect(server, TlsPolicy(ca_file=str(missing)))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsVerifyError, match="cannot load the CA file"):
        connect(server, TlsPolicy(ca_file=str(garbage)))
