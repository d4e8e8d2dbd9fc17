"""Seeds: real H.264 and H.265 streams, encoded by FFmpeg (x264 with and without
B-frames, with several slices a picture; x265 with B-frames), stored as access
units, and the RTP packetizers (RFC 6184: single NAL unit, STAP-A, FU-A;
RFC 7798: single, AP, FU) that turn them into interleaved RTP.

The access units are committed (tests/fuzz/seeds/*.au, a few KB each) so that a
run does not depend on the encoders' versions;

    python -m tests.fuzz.seeds

makes them again (needs ffmpeg with libx264 and libx265, and PyAV).
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SEEDS = Path(__file__).parent / "seeds"
START_CODE = b"\x00\x00\x00\x01"

ENCODINGS = {
    # name: (codec, encoder arguments)
    "h264_bframes": ("h264", ["-c:v", "libx264", "-bf", "2"]),
    "h264_no_bframes": ("h264", ["-c:v", "libx264", "-bf", "0", "-profile:v", "baseline"]),
    "h264_slices": ("h264", ["-c:v", "libx264", "-bf", "0", "-x264-params", "slices=3"]),
    "hevc_bframes": ("hevc", ["-c:v", "libx265", "-x265-params", "bframes=2:log-level=error"]),
}


@dataclass
class AccessUnit:
    pts: int  # 90 kHz
    key: bool
    nals: list[bytes]  # without start codes

    def annex_b(self) -> bytes:
        return b"".join(START_CODE + nal for nal in self.nals)


@dataclass
class Seed:
    name: str
    hevc: bool
    units: list[AccessUnit]


def split_annex_b(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream."""
    nals: list[bytes] = []
    starts: list[tuple[int, int]] = []  # (start code's offset, NAL unit's offset)
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        at = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((at, i + 3))
        i = data.find(b"\x00\x00\x01", i + 3)
    for k, (_, begin) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(data)
        nals.append(data[begin:end].rstrip(b"\x00") if k + 1 == len(starts) else data[begin:end])
    return [n for n in nals if n]


def encode(name: str, frames: int = 8) -> Seed:
    """A short testsrc2 clip at 320x240, a keyframe every 6 frames, in MPEG-TS
    (Annex B, with timestamps), read back unit by unit with PyAV."""
    import av

    codec, arguments = ENCODINGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.ts"
        subprocess.run(
            [
                *["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi"],
                *["-i", "testsrc2=size=320x240:rate=25", "-frames:v", str(frames)],
                *[*arguments, "-crf", "45", "-g", "6", "-keyint_min", "6", "-sc_threshold", "0"],
                *["-f", "mpegts", str(out)],
            ],
            check=True,
        )
        units = []
        with av.open(str(out)) as container:
            for packet in container.demux(video=0):
                if packet.size and packet.pts is not None:
                    nals = split_annex_b(bytes(packet))
                    units.append(AccessUnit(int(packet.pts), bool(packet.is_keyframe), nals))
    return Seed(name, codec == "hevc", units)


def save(seed: Seed, path: Path) -> None:
    out = [json.dumps({"hevc": seed.hevc}).encode() + b"\n"]
    for unit in seed.units:
        out.append(struct.pack(">qBH", unit.pts, unit.key, len(unit.nals)))
        out += [struct.pack(">I", len(nal)) + nal for nal in unit.nals]
    path.write_bytes(b"".join(out))


def load(path: Path) -> Seed:
    data = path.read_bytes()
    line, _, rest = data.partition(b"\n")
    hevc = bool(json.loads(line)["hevc"])
    units, at = [], 0
    while at < len(rest):
        pts, key, count = struct.unpack_from(">qBH", rest, at)
        at += 11
        nals = []
        for _ in range(count):
            (size,) = struct.unpack_from(">I", rest, at)
            nals.append(rest[at + 4 : at + 4 + size])
            at += 4 + size
        units.append(AccessUnit(pts, bool(key), nals))
    return Seed(path.stem, hevc, units)


def load_all() -> list[Seed]:
    seeds = [load(path) for path in sorted(SEEDS.glob("*.au"))]
    if not seeds:
        raise RuntimeError(f"no seeds in {SEEDS}: run python -m tests.fuzz.seeds")
    return seeds


# -- RTP ------------------------------------------------------------------------


@dataclass
class Packet:
    """One interleaved RTP packet, field by field, so that a mutation can make
    any of them lie (the `*_field` overrides are written as they are)."""

    payload: bytes
    ts: int
    seq: int
    marker: bool
    unit: int  # index of the access unit it carries (-1: none)
    payload_type: int = 96
    channel: int = 0
    ssrc: int = 0x11223344
    csrcs: list[int] = field(default_factory=list)
    extension: bytes | None = None  # the extension's words (a multiple of 4)
    padding: int = 0  # padding bytes, the count byte included
    version: int = 2
    csrc_field: int | None = None
    extension_field: int | None = None
    padding_field: int | None = None
    size_field: int | None = None

    def frame(self) -> bytes:
        csrc_count = len(self.csrcs) if self.csrc_field is None else self.csrc_field
        first = (self.version & 3) << 6 | (0x20 if self.padding else 0) | (csrc_count & 15)
        if self.extension is not None:
            first |= 0x10
        data = bytearray([first, (0x80 if self.marker else 0) | (self.payload_type & 0x7F)])
        data += struct.pack(">HII", self.seq & 0xFFFF, self.ts & 0xFFFFFFFF, self.ssrc)
        for csrc in self.csrcs:
            data += struct.pack(">I", csrc & 0xFFFFFFFF)
        if self.extension is not None:
            words = (
                len(self.extension) // 4 if self.extension_field is None else self.extension_field
            )
            data += struct.pack(">HH", 0xBEDE, words & 0xFFFF) + self.extension
        data += self.payload
        if self.padding:
            count = self.padding if self.padding_field is None else self.padding_field
            data += bytes(self.padding - 1) + bytes([count & 0xFF])
        size = len(data) if self.size_field is None else self.size_field
        return b"$" + bytes([self.channel & 0xFF]) + struct.pack(">H", size & 0xFFFF) + bytes(data)


def _aggregate_header(hevc: bool, nals: list[bytes]) -> bytes:
    if not hevc:
        return bytes([max(n[0] & 0x60 for n in nals) | 24])  # F 0, the highest NRI
    return bytes([(nals[0][0] & 0x81) | (48 << 1), nals[0][1]])


def _fragments(hevc: bool, nal: bytes, mtu: int) -> list[bytes]:
    header_len = 2 if hevc else 1
    body = nal[header_len:]
    if hevc:
        head = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]])
        kind = (nal[0] >> 1) & 0x3F
    else:
        head = bytes([(nal[0] & 0xE0) | 28])
        kind = nal[0] & 0x1F
    step = max(1, mtu - len(head) - 1)
    pieces = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    out = []
    for i, piece in enumerate(pieces):
        fu = kind | (0x80 if i == 0 else 0) | (0x40 if i == len(pieces) - 1 else 0)
        out.append(head + bytes([fu]) + piece)
    return out


def packetize(
    seed: Seed, rng: random.Random, mtu: int, aggregate: bool = True, base_ts: int = 0
) -> list[Packet]:
    """RTP packets for every unit of ``seed``, the marker on each unit's last."""
    packets: list[Packet] = []
    seq = rng.randrange(65536)
    for index, unit in enumerate(seed.units):
        payloads: list[bytes] = []
        pending: list[bytes] = []  # small NAL units waiting for an aggregate
        for nal in [*unit.nals, b""]:  # b"": the end, flushes what is pending
            if pending and (
                not nal
                or len(nal) > mtu
                or not aggregate
                or sum(len(n) + 2 for n in pending) + len(nal) + 5 > mtu
            ):
                if len(pending) == 1:
                    payloads.append(pending[0])
                else:
                    sizes = b"".join(struct.pack(">H", len(n)) + n for n in pending)
                    payloads.append(_aggregate_header(seed.hevc, pending) + sizes)
                pending = []
            if not nal:
                break
            if len(nal) > mtu:
                payloads += _fragments(seed.hevc, nal, mtu)
            else:
                pending.append(nal)
        for i, payload in enumerate(payloads):
            last = i == len(payloads) - 1
            packets.append(Packet(payload, base_ts + unit.pts, seq, last, index))
            seq = (seq + 1) & 0xFFFF
    return packets


def main() -> None:
    SEEDS.mkdir(exist_ok=True)
    for name in ENCODINGS:
        seed = encode(name)
        save(seed, SEEDS / f"{name}.au")
        size = (SEEDS / f"{name}.au").stat().st_size
        print(f"{name}: {len(seed.units)} units, {size} bytes")


if __name__ == "__main__":
    main()
