"""TlsBridge: rtsps:// for our RTSP client, with the camera's certificate checked.

The C receive loop (``_rtp.c``) reads a plain socket with poll() and recv(); it
cannot speak TLS. So for an ``rtsps://`` camera the TLS connection ends here,
in Python's ``ssl`` (OpenSSL, certificates verified against the system's CAs or
a CA file, host name checked), and a socket pair carries the plain bytes to and
from the RTSP client and the C loop. A thread copies between the two: one
recv() and one send() per burst the camera sends, which is a fraction of what
the decoder costs, and only for rtsps:// cameras.

FFmpeg's RTSP client does not check certificates at all, so with verification
on, an rtsps:// camera is never handed to it (capture/source.py).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # ssl is imported where a camera speaks TLS: 1.5 MB a worker otherwise
    import ssl

CHUNK = 256 * 1024  # as much as the C loop takes in one recv()
POLL = 0.5  # seconds: how often the copying thread looks whether it should stop


class TlsVerifyError(OSError):
    """The camera's certificate was refused, or the CA file to check it with
    cannot be loaded: retrying will not help."""


@dataclass(frozen=True)
class TlsPolicy:
    """How an rtsps:// camera's certificate is checked."""

    verify: bool = True  # False: any certificate, any host name (say so per stream)
    ca_file: str | None = None  # PEM bundle of CAs to trust instead of the system's

    def context(self) -> ssl.SSLContext:
        import ssl

        context = ssl.create_default_context(cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def connect_tls(raw: socket.socket, host: str, policy: TlsPolicy, timeout: float) -> socket.socket:
    """The TLS handshake over ``raw`` (connected), then a plain socket whose
    bytes are the TLS connection's. Raises TlsVerifyError for a refused
    certificate or a CA file that cannot be loaded, ssl.SSLError (an OSError)
    for any other TLS failure."""
    import ssl

    raw.settimeout(timeout)
    try:
        context = policy.context()
    except (OSError, ValueError) as exc:  # the CA file: missing, unreadable, not PEM
        raw.close()
        raise TlsVerifyError(f"cannot load the CA file {policy.ca_file}: {exc}") from None
    try:
        secure = context.wrap_socket(raw, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        raise TlsVerifyError(
            f"the camera's TLS certificate was refused: {exc.verify_message}"
        ) from None
    except BaseException:
        raw.close()
        raise
    try:
        ours, theirs = socket.socketpair()
    except OSError:
        secure.close()
        raise
    TlsBridge(secure, theirs).start()
    return ours


class TlsBridge(threading.Thread):
    """Copies between a TLS socket and the far end of a socket pair until
    either side closes; then closes both."""

    def __init__(self, secure: ssl.SSLSocket, plain: socket.socket) -> None:
        import ssl  # loaded already: a bridge exists only for a TLS socket

        super().__init__(name="tls-bridge", daemon=True)
        self.secure, self.plain = secure, plain
        self._half_read = (ssl.SSLWantReadError, TimeoutError)  # half a record so far

    def run(self) -> None:
        secure, plain = self.secure, self.plain
        secure.settimeout(POLL)  # a record cut short by a dead camera ends too
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(secure, selectors.EVENT_READ)
                selector.register(plain, selectors.EVENT_READ)
                while True:
                    # Bytes OpenSSL has decrypted already make no fd readable.
                    pending = secure.pending() > 0
                    ready = {key.fileobj for key, _ in selector.select(0 if pending else POLL)}
                    if (secure in ready or pending) and not self._copy(secure, plain):
                        return
                    if plain in ready and not self._copy(plain, secure):
                        return
        except OSError:
            return  # either side failed: the RTSP client sees the pair close
        finally:
            with contextlib.suppress(OSError):
                secure.close()
            with contextlib.suppress(OSError):
                plain.shutdown(socket.SHUT_RDWR)
            plain.close()

    def _copy(self, source: socket.socket, sink: socket.socket) -> bool:
        try:
            data = source.recv(CHUNK)
        except self._half_read:
            return True
        if not data:
            return False
        sink.sendall(data)
        return True
