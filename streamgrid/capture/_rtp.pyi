# Units skipped while only keyframes were wanted are held (since the last
# keyframe, bounded) and handed over first by the next read that wants them all.
HOLDS_SKIPPED: int

class EndOfStream(EOFError): ...
class ReadTimeout(TimeoutError): ...

class RtpReader:
    counts: tuple[int, int, int, int]
    last_status: int
    # Since the last keyframe handed out, a unit was lost, dropped or skipped
    # without being held: units handed out now do not decode from that keyframe.
    chain_broken: bool

    def __init__(
        self,
        fd: int,
        channel: int,
        payload_type: int,
        hevc: bool,
        read_timeout: float,
        received: bytes = ...,
    ) -> None: ...
    # Raises EndOfStream, ReadTimeout, or OSError with a one-line reason: the
    # socket's error, or what the camera sent that cannot be read on ("an RTSP
    # message in the data has a malformed Content-Length", "... a body over
    # 64 KiB"); once raised for the data, every later read raises it again.
    def read(
        self, keyframes_only: bool, max_wait: float
    ) -> tuple[bytes, int, bool, float, float | None, int | None] | None: ...
    def interrupt(self) -> None: ...
    def close(self) -> None: ...
