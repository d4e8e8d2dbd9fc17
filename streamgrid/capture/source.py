"""VideoSource: packets from an RTSP camera, with bounded waits, and their decoder
(decoding.py).

PyAV (FFmpeg) rather than OpenCV's VideoCapture: it hands over the Y plane
without colour conversion, exposes FFmpeg's errors by type (401, 404, refused,
timeout), and takes per-call open/read timeouts.

Two ways in, cheapest first: ``rtp`` (capture/rtp.py), our RTSP client with
a C receive loop, for H.264 and H.265 over TCP, which hands Python only the
units the sampler wants; ``pyav``, PyAV's demux(), for anything else FFmpeg
reads, returns into Python per packet. ``auto`` takes the first that can read
the camera and says why when it passes one over. Decoding is PyAV's in every
case.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import av
import av.error

from ..core.logs import log_event
from ..core.sources import SourceNotAllowed, SourcePolicy
from ..core.urls import mask_secrets, url_secrets
from . import rtp
from .decoding import PyAVDecoder
from .rtsp.errors import NoVideo, RtspAuthError, TransportRefused, Unsupported
from .rtsp.session import RtspSession
from .rtsp.urls import DEFAULT_PORTS
from .sampling import Arrival, LivenessTracker
from .settings import Demuxer
from .tls import TlsPolicy, TlsVerifyError

log = logging.getLogger("streamgrid.capture")

# Longest the C loop (rtp) skips units before Python may check its stop event
# and deadlines (a blocked read is bounded by the read timeout instead).
NATIVE_MAX_WAIT = 0.5


class SourceError(RuntimeError):
    """The camera could not be read; worth retrying."""


class SourceFatalError(SourceError):
    """Retrying will not help (credentials refused, forbidden)."""


def _describe(exc: BaseException, url: str, waited: float = 0.0, limit: float = 0.0) -> str:
    text = mask_secrets(str(getattr(exc, "strerror", None) or exc), url_secrets(url))
    # FFmpeg reports its own deadline as "Immediate exit requested" and a socket
    # timeout inside RTSP as "Invalid data"; say what happened.
    if isinstance(exc, av.error.ExitError) or (limit and waited >= 0.9 * limit):
        return f"timed out after {waited:.1f} s ({text})"
    return text


def with_address(url: str, address: str) -> str:
    """``url`` with its host replaced by ``address`` (an IP literal), user,
    password and port kept."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    host = f"[{address}]" if ":" in address else address
    netloc = (f"{userinfo}@" if userinfo else "") + host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class VideoSource:
    """Context manager over one connection; iterate ``arrivals(stop, ...)``."""

    def __init__(
        self,
        url: str,
        *,
        transport: str = "tcp",
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        decode_threads: int = 1,
        probe_seconds: float = 0.5,
        demuxer: Demuxer = "auto",
        tls: TlsPolicy | None = None,
        source_policy: SourcePolicy | None = None,
    ) -> None:
        self.url = url
        self.transport = transport
        self.tls = tls or TlsPolicy()
        self.source_policy = source_policy or SourcePolicy()  # where cameras may be
        # Where FFmpeg may go, if it reads this camera: the URL our client ended
        # at after redirects, with the credentials only where they were given.
        self._ffmpeg_url = url
        self._rtp_refusal: SourceFatalError | None = None  # a 401 that FFmpeg may retry
        self._passed_over = ""  # why our client did not read the camera
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.decode_threads = decode_threads
        self.probe_seconds = probe_seconds
        self.demuxer = demuxer
        self.container: av.container.InputContainer | None = None
        self.native: rtp.RtpPackets | None = None  # the C loop, when rtp reads
        self.demux = ""  # once open: which way in, ``rtp`` or ``pyav``

    def __enter__(self) -> VideoSource:
        if self._rtp_can_run() and self._open_rtp():
            self.demux = "rtp"
            return self
        if urlsplit(self._ffmpeg_url).scheme.lower() == "rtsps" and self.tls.verify:
            why = f" ({self._passed_over})" if self._passed_over else ""
            raise self._rtp_refusal or SourceFatalError(
                f"our RTSP client cannot read this camera{why}, and FFmpeg's, which could, "
                "does not check the camera's certificate: turn verification off for this "
                "stream (tls_verify) to let it"
            )
        try:
            self._open_ffmpeg()
        except SourceError:
            # Our client's refusal stands, whatever FFmpeg's try ended in: a camera
            # that locks an account after failed logins must not be retried forever.
            if self._rtp_refusal is not None:
                raise self._rtp_refusal from None
            raise
        return self

    def _open_ffmpeg(self) -> None:
        url = self._check_ffmpeg_source(self._ffmpeg_url)
        options = {
            "rtsp_transport": self.transport,
            # Socket-level timeout (microseconds), on top of the read deadline.
            "timeout": str(int(self.read_timeout * 1_000_000)),
            "allowed_media_types": "video",
            # FFmpeg buffers what it probes; a short probe means a fast start.
            "analyzeduration": str(int(self.probe_seconds * 1_000_000)),
        }
        started = time.monotonic()
        try:
            self.container = av.open(
                url, options=options, timeout=(self.open_timeout, self.read_timeout)
            )
            self.demux = "pyav"
        except (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError) as exc:
            self.__exit__(None, None, None)
            raise SourceFatalError(_describe(exc, url)) from None
        except (av.error.FFmpegError, OSError) as exc:
            self.__exit__(None, None, None)
            waited = time.monotonic() - started
            limit = min(self.open_timeout, self.read_timeout)
            raise SourceError(_describe(exc, url, waited, limit)) from None
        if self.container is not None and not self.container.streams.video:
            self.__exit__(None, None, None)
            raise SourceFatalError("the source has no video stream")

    def _check_ffmpeg_source(self, url: str) -> str:
        """The source policy before FFmpeg gets the URL, which then names the
        address just checked instead of the host, so FFmpeg's own lookup
        cannot answer differently (DNS rebinding). A lookup that fails here
        fails the attempt (retried): nothing unchecked is handed on. FFmpeg
        follows RTSP redirects on its own, unchecked: a residual risk the
        README names (an egress NetworkPolicy closes it in a cluster)."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host:
            raise SourceFatalError("source not allowed: the URL names no host to check")
        port = port or DEFAULT_PORTS.get(parts.scheme.lower(), 554)
        try:
            endpoints = self.source_policy.resolve_and_check(host, port, self.open_timeout)
        except SourceNotAllowed as exc:
            raise SourceFatalError(str(exc)) from None
        except (OSError, UnicodeError) as exc:
            raise SourceError(f"cannot look up {host}: {exc}") from None
        return with_address(url, str(endpoints[0].sockaddr[0]))

    def _may_try(self, demuxer: Demuxer, reason: str | None) -> bool:
        """Whether to try ``demuxer``: yes with no reason against it. Against it,
        a demuxer asked for by name fails the stream; under auto the reason is
        logged and the next one is tried."""
        if reason is None:
            return True
        if self.demuxer == demuxer:
            raise SourceFatalError(f"the {demuxer} demuxer cannot read this camera: {reason}")
        _warn_passed_over(demuxer, reason)
        return False

    def _rtp_can_run(self) -> bool:
        if self.demuxer not in ("auto", "rtp"):
            return False
        reason = rtp.unavailable()
        if reason is None and self.transport != "tcp":
            reason = f"RTSP over {self.transport}"
        return self._may_try("rtp", reason)

    def _open_rtp(self) -> bool:
        """Our RTSP client; False when it cannot read this camera (auto goes on
        to FFmpeg's)."""
        started = time.monotonic()
        session: RtspSession | None = None
        try:
            self.native = rtp.RtpPackets(
                self.url, self.open_timeout, self.read_timeout, self.tls, self.source_policy
            )
            session = self.native.session
            self.native.open()
        except TransportRefused as exc:
            self._closed_after(session, str(exc))
            if self.transport == "tcp":
                self.transport = "udp"  # the camera's choice: FFmpeg reads RTP over UDP
            return self._may_try("rtp", str(exc))
        except Unsupported as exc:
            self._closed_after(session, str(exc))
            return self._may_try("rtp", str(exc))  # False, or fatal if rtp was asked for
        except RtspAuthError as exc:
            self._closed_after(session, "the camera refused our credentials")
            refusal = SourceFatalError(_describe(exc, self.url))
            if self.demuxer == "rtp":
                raise refusal from None
            # FFmpeg's client may satisfy a camera that ours does not (a Digest
            # variant): it gets one try, where ours ended up, before this is final.
            self._rtp_refusal = refusal
            _warn_passed_over("rtp", "the camera refused our credentials; trying FFmpeg's client")
            return False
        except TlsVerifyError as exc:
            self.__exit__(None, None, None)
            raise SourceFatalError(str(exc)) from None
        except NoVideo:
            self.__exit__(None, None, None)
            raise SourceFatalError("the source has no video stream") from None
        except SourceNotAllowed as exc:  # the camera's address, or a redirect's
            self.__exit__(None, None, None)
            raise SourceFatalError(str(exc)) from None
        except OSError as exc:  # refused, unreachable, timed out, an error status
            self.__exit__(None, None, None)
            waited = time.monotonic() - started
            if isinstance(exc, TimeoutError) and not str(exc).startswith("timed out after"):
                raise SourceError(f"timed out after {waited:.1f} s ({exc})") from None
            raise SourceError(_describe(exc, self.url)) from None
        except Exception as exc:  # the net under every parser: no camera may crash us
            self.__exit__(None, None, None)
            log.exception("capture.rtp_open_failed")  # a bug of ours: worth its traceback
            reason = _describe(exc, self.url)
            raise SourceError(f"the camera's answers could not be read ({reason})") from None
        return True

    def _closed_after(self, session: RtspSession | None, why: str) -> None:
        """Closes what our client opened; FFmpeg, if it reads the camera next,
        goes where our client was redirected to, with credentials only where
        they were given. (FFmpeg follows redirects itself, credentials and
        all: a camera that redirects FFmpeg elsewhere, but not our client, is
        beyond what this can prevent.)"""
        self.__exit__(None, None, None)
        self._passed_over = why
        if session is not None:
            self._ffmpeg_url = session.location()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.container is not None:
            with contextlib.suppress(av.error.FFmpegError, OSError):
                self.container.close()
            self.container = None
        if self.native is not None:
            self.native.close()
            # Units dropped as incomplete are packets the camera or the
            # network lost: worth seeing when samples go missing.
            handed, skipped, dropped, _ = self.native.counts
            if handed:
                log_event(log, "capture.closed", units=handed, skipped=skipped, dropped=dropped)
            self.native = None

    def interrupt(self) -> None:
        """From any thread: end a blocked read now (rtp) rather than at its
        deadline (PyAV's demux offers no such call; its read times out)."""
        packets = self.native  # once: the capture thread may be closing it
        if packets is not None:
            packets.interrupt()

    def codec_name(self) -> str:
        if self.native is not None:
            return self.native.codec_name
        assert self.container is not None
        return str(self.container.streams.video[0].codec_context.name)

    def decoder(self) -> PyAVDecoder:
        if self.native is not None:
            name, extradata = self.native.codec_name, self.native.extradata or None

            def fresh() -> av.CodecContext:
                context = av.CodecContext.create(name, "r")
                context.extradata = extradata
                context.thread_count = self.decode_threads
                return context

            return PyAVDecoder(fresh(), fresh)
        assert self.container is not None
        context = self.container.streams.video[0].codec_context  # the container's own
        context.thread_count = self.decode_threads
        return PyAVDecoder(context)

    @property
    def recovers_skipped(self) -> bool:
        """Whether packets skipped while only keyframes were wanted are handed
        over after all when asked (so the sampler may give up on a late
        keyframe): the rtp reader holds them; PyAV's demux skips nothing."""
        return self.native is None or self.native.recovers_skipped

    def arrivals(
        self,
        stop: threading.Event,
        skipping_until: Callable[[], float | None] = lambda: None,
    ) -> Iterator[Arrival | None]:
        """Video packets as they arrive, until ``stop`` or an error. Until the
        time ``skipping_until()`` gives, the C reader (rtp) skips all but
        keyframes; it also yields None now and then while it skips, so that
        the caller can check its deadlines.

        Raises SourceError on a read timeout or when the stream ends.
        """
        if self.native is not None:
            return self._native_arrivals(self.native, stop, skipping_until)
        return self._pyav_arrivals(stop)

    def _native_arrivals(
        self,
        packets: rtp.RtpPackets,
        stop: threading.Event,
        skipping_until: Callable[[], float | None],
    ) -> Iterator[Arrival | None]:
        # A float once: Fraction arithmetic on every packet is measurable.
        time_base = float(packets.time_base)
        liveness = LivenessTracker()
        while not stop.is_set():
            asked = time.monotonic()
            until = skipping_until()
            keyframes_only = until is not None and asked < until
            wait = NATIVE_MAX_WAIT
            if keyframes_only and until is not None:
                wait = max(0.001, min(wait, until - asked))  # back when the keyframe is late
            try:
                got = packets.read(keyframes_only, wait)
            except EOFError:
                raise SourceError("the stream ended") from None
            except TimeoutError as exc:  # the C loop's own read deadline
                text = mask_secrets(str(exc), url_secrets(self.url))
                raise SourceError(f"timed out after {self.read_timeout:.1f} s ({text})") from None
            except OSError as exc:
                waited = time.monotonic() - asked
                raise SourceError(_describe(exc, self.url, waited, self.read_timeout)) from None
            if got is None:
                yield None
                continue
            pts = None if got.pts is None else got.pts * time_base
            previous = None
            if got.previous_arrived is not None and got.previous_pts is not None:
                previous = (got.previous_arrived, got.previous_pts * time_base)
            live = liveness.observe(pts, got.arrived, previous)
            yield Arrival(
                got.packet, got.keyframe, pts, got.arrived, live, got.after_gap, liveness.late
            )

    def _pyav_arrivals(self, stop: threading.Event) -> Iterator[Arrival | None]:
        assert self.container is not None
        stream = self.container.streams.video[0]
        time_base = float(stream.time_base) if stream.time_base is not None else None
        liveness = LivenessTracker()
        last = time.monotonic()
        try:
            for packet in self.container.demux(stream):
                if stop.is_set():
                    return
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                last = time.monotonic()
                pts = None
                if packet.pts is not None and time_base is not None:
                    pts = packet.pts * time_base
                live = liveness.observe(pts, last)
                yield Arrival(packet, packet.is_keyframe, pts, last, live, late=liveness.late)
        except (av.error.FFmpegError, OSError) as exc:
            waited = time.monotonic() - last
            raise SourceError(_describe(exc, self.url, waited, self.read_timeout)) from None
        raise SourceError("the stream ended")


@functools.cache  # once per process and reason: a reconnecting worker says it once
def _warn_passed_over(demuxer: str, reason: str) -> None:
    # A camera our RTSP client does not read (MJPEG, UDP) is normal; a missing
    # extension is a broken install.
    level = logging.INFO if demuxer == "rtp" and "not built" not in reason else logging.WARNING
    log_event(log, f"capture.{demuxer}_unavailable", level, reason=reason)
