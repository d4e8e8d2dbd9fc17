"""One fuzz input (a byte stream and how to feed it) and the driver that feeds it
to an ``RtpReader`` over a socket pair, reading until the end of the stream.

A case file is one line of JSON (how to drive the reader) then the raw bytes the
camera sends. The corpus (tests/fuzz/corpus/) holds the inputs that once crashed
or hung the reader; tests/unit/test_rtp_corpus.py replays them.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

# The errors read() may raise on a hostile stream: the end of it, or an OSError
# naming what is wrong. Anything else, or an OSError not in this list, is a
# finding.
ALLOWED_ERRORS = (
    "the server closed the connection",
    "unparseable data from the server",
    "an RTSP message in the data has a malformed Content-Length",
    "an RTSP message in the data has a body over 64 KiB",
)


@dataclass
class Case:
    stream: bytes
    hevc: bool = False
    channel: int = 0
    payload_type: int = 96
    ahead: int = 0  # the first bytes go in as `received` (read ahead by the handshake)
    chunks: list[int] = field(default_factory=list)  # sizes sent one at a time; rest at once
    keyframes: list[bool] = field(default_factory=lambda: [False])  # per read(), cycled
    note: str = ""
    expect: Expected | None = None  # what must come out (clean and lossy streams)

    def dump(self) -> bytes:
        options = {
            "hevc": self.hevc,
            "channel": self.channel,
            "payload_type": self.payload_type,
            "ahead": self.ahead,
            "chunks": self.chunks,
            "keyframes": self.keyframes,
            "note": self.note,
        }
        if self.expect is not None:
            options["expect"] = self.expect.to_json()
        return json.dumps(options, separators=(",", ":")).encode() + b"\n" + self.stream

    @classmethod
    def load(cls, data: bytes) -> Case:
        line, _, stream = data.partition(b"\n")
        options: dict[str, Any] = json.loads(line)
        expect = options.pop("expect", None)
        case = cls(stream=stream, **options)
        if expect is not None:
            case.expect = Expected.from_json(expect)
        return case

    @classmethod
    def read(cls, path: Path) -> Case:
        return cls.load(path.read_bytes())


@dataclass
class Outcome:
    units: list[tuple[bytes, int, bool]]  # (data, pts, key) as handed out
    counts: tuple[int, int, int, int]
    last_status: int
    error: str  # how the stream ended: the message of the exception read() raised
    # Per unit: the reader said its chain from the last keyframe was whole.
    whole: list[bool] = field(default_factory=list)


class Finding(AssertionError):
    """The reader did something it must not (other than crash or hang)."""


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:16]


@dataclass
class Expected:
    """What must come out of a clean or lossy stream (read without keyframes_only)."""

    exact: bool  # clean: exactly `complete`, in order
    # Clean, read with keyframes_only now and then: every key unit, and the rest
    # a subsequence of `complete` in order (held back in C, then handed over).
    subsequence: bool = False
    # Lossy, read with keyframes_only now and then: every complete key unit
    # out, and a non-key unit said to be whole follows, in what was sent, only
    # units handed out since the last key unit handed out (the hold never
    # carries a chain across a hole).
    chained: bool = False
    sent: list[tuple[str, int, bool]] = field(default_factory=list)  # every unit, whole
    complete: list[tuple[str, int, bool]] = field(default_factory=list)  # digest, pts, key
    tails: dict[int, set[str]] = field(default_factory=dict)  # pts: digests of NAL suffixes

    def to_json(self) -> dict[str, Any]:
        return {
            "exact": self.exact,
            "subsequence": self.subsequence,
            "chained": self.chained,
            "sent": self.sent,
            "complete": self.complete,
            "tails": {str(pts): sorted(digests) for pts, digests in self.tails.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Expected:
        complete = [(str(d), int(p), bool(k)) for d, p, k in data["complete"]]
        tails = {int(pts): set(digests) for pts, digests in data["tails"].items()}
        sent = [(str(d), int(p), bool(k)) for d, p, k in data.get("sent", [])]
        return cls(
            bool(data["exact"]),
            bool(data.get("subsequence")),
            bool(data.get("chained")),
            sent,
            complete,
            tails,
        )

    def _check_chains(self, got: list[tuple[str, int, bool]], whole: list[bool]) -> None:
        missing = [u for u in self.complete if u[2] and u not in got]
        if missing:
            raise Finding(f"complete key units not handed out: {missing}; got {got}")
        index = {pts: i for i, (_, pts, _) in enumerate(self.sent)}
        handed = {pts for _, pts, _ in got}
        last_key: int | None = None
        for (_, pts, key), is_whole in zip(got, whole, strict=True):
            if pts not in index:
                raise Finding(f"a unit at {pts} that was not sent: {got}")
            if key:
                last_key = index[pts]
            elif is_whole and (
                last_key is None
                or any(p not in handed for _, p, _ in self.sent[last_key + 1 : index[pts]])
            ):
                raise Finding(f"the unit at {pts} handed out as whole after a hole: {got}")

    def check(self, outcome: Outcome) -> None:

        got = [(digest(data), pts, key) for data, pts, key in outcome.units]
        if self.chained:
            self._check_chains(got, outcome.whole)
            return
        if self.subsequence:
            rest = iter(self.complete)
            if not all(unit in rest for unit in got):  # consumes: order is checked
                raise Finding(f"units out of order or not sent: {got}; sent {self.complete}")
            if [u for u in self.complete if u[2]] != [u for u in got if u[2]]:
                raise Finding(f"a key unit missing: {got}; sent {self.complete}")
            return
        if self.exact:
            if got != self.complete:
                raise Finding(f"clean stream: expected {self.complete}, got {got}")
            return
        missing = [unit for unit in self.complete if unit not in got]
        if missing:
            raise Finding(f"whole units not handed out: {missing}; got {got}")
        for data_digest, pts, _ in got:
            if data_digest not in self.tails.get(pts, set()):
                raise Finding(f"a unit at {pts} that is not the end of the one sent: {got}")


def _check_unit(got: Any, keyframes_only: bool) -> tuple[bytes, int, bool]:
    data, pts, key, arrived, previous_arrived, previous_pts = got
    if not isinstance(data, bytes) or not data.startswith(b"\x00\x00\x00\x01"):
        raise Finding(f"a unit not in Annex B: {bytes(data[:8])!r}")
    if keyframes_only and not key:
        raise Finding("a unit that is not key while only keyframes were asked for")
    if not isinstance(arrived, float) or (previous_arrived is None) != (previous_pts is None):
        raise Finding(f"odd timing fields: {arrived!r} {previous_arrived!r} {previous_pts!r}")
    return data, int(pts), bool(key)


def drive(module: ModuleType, case: Case, budget: float = 20.0) -> Outcome:
    """Feeds ``case`` to a reader from ``module`` (the _rtp extension, normal or
    sanitized build) and reads until it raises. Raises Finding on a broken
    invariant, or when reading takes longer than ``budget`` seconds (a reader
    that holds the GIL forever is caught by the caller's watchdog instead)."""
    ours, theirs = socket.socketpair()
    started = time.monotonic()
    try:
        theirs.setblocking(False)
        ahead = case.stream[: case.ahead]
        reader = module.RtpReader(
            ours.fileno(), case.channel, case.payload_type, case.hevc, budget, ahead
        )
        units: list[tuple[bytes, int, bool]] = []
        whole: list[bool] = []
        reads = 0
        modes = case.keyframes or [False]

        def step(max_wait: float) -> bool:
            """One read(); False once nothing more came within max_wait."""
            nonlocal reads
            keyframes_only = modes[reads % len(modes)]
            reads += 1
            got = reader.read(keyframes_only, max_wait)
            if got is None:
                return False
            units.append(_check_unit(got, keyframes_only))
            whole.append(not getattr(reader, "chain_broken", False))

            if time.monotonic() - started > budget:
                raise Finding(f"still reading after {budget:g} s")
            return True

        def send_all(data: memoryview) -> None:
            while data:
                try:
                    data = data[theirs.send(data) :]
                except BlockingIOError:  # the reader must make room first
                    step(0.002)

        rest = memoryview(case.stream)[case.ahead :]
        error = ""
        try:
            for size in case.chunks:
                if not rest:
                    break
                send_all(rest[:size])
                rest = rest[size:]
                step(0.001)  # let it receive this piece alone: a split read
            send_all(rest)
            theirs.shutdown(socket.SHUT_WR)
            while True:
                step(budget)
        except EOFError as exc:
            error = str(exc)
        except OSError as exc:
            error = str(exc)
            if isinstance(exc, TimeoutError) or error not in ALLOWED_ERRORS:
                raise Finding(f"read() raised {type(exc).__name__}: {error}") from exc
        counts = tuple(reader.counts)
        if len(counts) != 4 or counts[0] != len(units):
            raise Finding(f"counts {counts} after {len(units)} units handed out")
        outcome = Outcome(
            units, (counts[0], counts[1], counts[2], counts[3]), reader.last_status, error, whole
        )
        if case.expect is not None:
            case.expect.check(outcome)
        return outcome
    finally:
        ours.close()
        theirs.close()


def read_cases(paths: Sequence[Path]) -> list[tuple[Path, Case]]:
    return [(path, Case.read(path)) for path in paths]
