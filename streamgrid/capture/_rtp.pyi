class EndOfStream(EOFError): ...
class ReadTimeout(TimeoutError): ...

class RtpReader:
    counts: tuple[int, int, int, int]
    last_status: int
    def __init__(
        self,
        fd: int,
        channel: int,
        payload_type: int,
        hevc: bool,
        read_timeout: float,
        received: bytes = ...,
    ) -> None: ...
    def read(
        self, keyframes_only: bool, max_wait: float
    ) -> tuple[bytes, int, bool, float, float | None, int | None] | None: ...
    def interrupt(self) -> None: ...
    def close(self) -> None: ...
