"""Fuzz inputs: a seed packetized into interleaved RTP, then made to lie.

Three kinds, drawn at random:

- clean: a real stream, cut anywhere, with RTCP, other payload types and well
  formed RTSP answers mixed in; every unit must come out exactly as it went in.
- loss: the same with packets dropped; every unit whose packets all came must
  come out exactly, and nothing else but the tail of a unit (NAL units lost
  from its start) may come out.
- hostile: structure-aware lies in every length field and flag (the `$` size,
  CSRC count, extension length, padding, STAP-A/AP sizes, FU bits, NAL types,
  sequence numbers, timestamps, channels, payload types), RTSP answers with odd
  Content-Length values and status lines, then bit flips, truncations and
  splices of two streams. Only the invariants hold (drive() checks them).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .case import Case, Expected, digest
from .seeds import AccessUnit, Packet, Seed, packetize

IN_CAPACITY = 256 * 1024


# -- RTSP messages a server (or an attacker) interleaves -------------------------


def rtsp_message(rng: random.Random) -> bytes:
    status = rng.choice(
        [b"RTSP/1.0 200 OK", b"RTSP/1.0 454 Session Not Found", b"RTSP/1.0 ", b"RTSP/1.0 2",
         b"RTSP/1.0 99999999999999999999", b"RTSP/1.0 -1 X", b"HTTP/1.1 200 OK",
         b"SET_PARAMETER rtsp://127.0.0.1/x RTSP/1.0", b"RTSP/1.0 \t200"]
    )  # fmt: skip
    headers = [b"CSeq: %d" % rng.randrange(100)]
    body = bytes(rng.randrange(256) for _ in range(rng.choice([0, 0, 5, 40])))
    header_len_guess = len(status) + 2 + sum(len(h) + 2 for h in headers) + 2 + 20
    lengths: list[Callable[[], bytes]] = [
        lambda: b"%d" % len(body),
        lambda: b"-%d" % header_len_guess,
        lambda: b"%d" % (2**64 - header_len_guess),
        lambda: b"%d" % rng.choice([65535, 65536, 65537, 2**31, 2**32 + 5, 10**30]),
        lambda: rng.choice([b"", b" ", b"abc", b"5x", b"+5", b"0x10", b"5 5", b"\t7\t", b"-0"]),
        lambda: b"9" * rng.randrange(1, 400),
    ]
    if rng.random() < 0.8:
        value = rng.choice(lengths)()
        name = rng.choice([b"Content-Length:", b"content-length:", b"CONTENT-LENGTH:"])
        headers.append(name + rng.choice([b" ", b"", b"\t"]) + value)
    if rng.random() < 0.1:
        headers.append(b"Content-Length: " + rng.choice(lengths)())  # twice
    end = rng.choice([b"\r\n"] * 8 + [b"\n", b"\r", b""])
    message = status + b"\r\n" + b"".join(h + end for h in headers) + end
    if rng.random() < 0.05:
        message = message.replace(b"\r\n\r\n", b"\r\n")  # a message that never ends
    return message + body


def digits_to_the_end(rng: random.Random) -> tuple[bytes, int]:
    """A status line or a Content-Length whose digits run to the end of the
    reader's buffer: (stream, bytes to hand over as already received)."""
    head = rng.choice(
        [b"RTSP/1.0 \r\n\r\n", b"RTSP/1.0 200 OK\r\nContent-Length:\r\n\r\n",
         b"RTSP/1.0 200 OK\r\nContent-Length: \r\n\r\n",
         b"RTSP/1.0 200 OK\r\nContent-Length: \r\n \r\n\r\n"]
    )  # fmt: skip
    size = IN_CAPACITY if rng.random() < 0.5 else rng.randrange(len(head), IN_CAPACITY)
    stream = head + b"7" * (size - len(head))
    return stream, (len(stream) if rng.random() < 0.5 else 0)


# -- packet mutations -------------------------------------------------------------


def _lie_about_sizes(rng: random.Random, p: Packet, hevc: bool) -> None:
    """An aggregate's size fields, or its header, say something else."""
    data = bytearray(p.payload)
    start = 2 if hevc else 1
    if len(data) >= start + 2:
        at = start
        while at + 2 <= len(data) and rng.random() < 0.6:
            at += 2 + ((data[at] << 8) | data[at + 1])
        at = min(at, len(data) - 2)
        value = rng.choice([0, 1, 2, 0xFFFF, len(data) - at - 1, len(data) - at - 2, len(data)])
        data[at : at + 2] = (value & 0xFFFF).to_bytes(2, "big")
    p.payload = bytes(data)


def _nal_edit(rng: random.Random, p: Packet, hevc: bool) -> None:
    data = bytearray(p.payload)
    if not data:
        return
    choice = rng.randrange(5)
    if choice == 0:  # another NAL unit type in the (payload) header
        if hevc:
            data[0] = (data[0] & 0x81) | (rng.randrange(64) << 1)
        else:
            data[0] = (data[0] & 0xE0) | rng.randrange(32)
    elif choice == 1 and len(data) > (2 if hevc else 1):  # FU header: S/E bits, type
        at = 2 if hevc else 1
        data[at] ^= rng.choice([0x80, 0x40, 0xC0, 0x3F, 0x1F, rng.randrange(256)])
    elif choice == 2:
        del data[rng.randrange(min(4, len(data) + 1)) :]  # 0 to 3 bytes left
    elif choice == 3 and len(data) > 1:  # the first byte of the NAL body (first slice bit)
        data[min(len(data) - 1, 3 if hevc else 2)] ^= 0x80
    else:
        data[0] ^= 0x80  # forbidden_zero_bit
    p.payload = bytes(data)


def mutate_packet(rng: random.Random, p: Packet, hevc: bool) -> None:
    kind = rng.randrange(13)
    if kind == 0:
        p.seq = rng.choice([p.seq + rng.randint(-3, 3), rng.randrange(65536)])
    elif kind == 1:
        p.ts = rng.choice([p.ts + rng.randint(-3, 3), rng.randrange(2**32), p.ts + 2**31])
    elif kind == 2:
        p.marker = not p.marker
    elif kind == 3:
        p.payload_type = rng.choice([0, 97, 127, rng.randrange(128)])
    elif kind == 4:
        p.channel = rng.choice([1, 2, 255, rng.randrange(256)])
    elif kind == 5:
        p.version = rng.randrange(4)
    elif kind == 6:
        p.csrcs = [rng.randrange(2**32) for _ in range(rng.randrange(16))]
        if rng.random() < 0.5:
            p.csrc_field = rng.randrange(16)
    elif kind == 7:
        p.extension = bytes(rng.randrange(256) for _ in range(4 * rng.randrange(4)))
        if rng.random() < 0.6:
            p.extension_field = rng.choice([0xFFFF, 1, 2, 100, rng.randrange(65536)])
    elif kind == 8:
        p.padding = rng.randrange(1, 256)
        if rng.random() < 0.6:
            p.padding_field = rng.choice([0, 1, 255, p.padding + 1, rng.randrange(256)])
    elif kind == 9:
        base = len(p.payload) + 12
        p.size_field = rng.choice(
            [0, 1, 3, 11, 12, base - 1, base + 1, 0xFFFF, rng.randrange(65536)]
        )
    elif kind == 10:
        _lie_about_sizes(rng, p, hevc)
    else:
        _nal_edit(rng, p, hevc)


# -- stream mutations -------------------------------------------------------------


def mutate_bytes(rng: random.Random, data: bytearray, other: bytes) -> None:
    if not data:
        return
    kind = rng.randrange(7)
    if kind == 0:
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice([0, 0xFF, 0x24, 0x0D, 0x0A, 0x80, 0x7F])
    elif kind == 2:
        del data[rng.randrange(len(data)) :]
    elif kind == 3:  # splice: this stream's start, the other's end
        data[rng.randrange(len(data)) :] = other[rng.randrange(len(other) + 1) :]
    elif kind == 4:
        at = rng.randrange(len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == 5:
        at, size = rng.randrange(len(data)), rng.randint(1, 2000)
        data[at:at] = data[at : at + size]
    else:
        at = rng.randrange(len(data))
        del data[at : at + rng.randint(1, 200)]


# -- cases --------------------------------------------------------------------------


def _driving(rng: random.Random, case: Case) -> None:
    """How the stream is fed: pieces of random sizes, some bytes handed over as
    read ahead, keyframes only or not per read."""
    if rng.random() < 0.6:
        case.chunks = [
            rng.choice([1, 2, 3, 4, 5, 7, 13, 100, 1000, 1500, 4000])
            for _ in range(rng.randint(1, 10))
        ]
    if rng.random() < 0.2:
        case.ahead = rng.randrange(min(len(case.stream), IN_CAPACITY) + 1)


def _benign_extras(rng: random.Random, packets: list[Packet]) -> list[bytes]:
    """Frames around the packets that must change nothing."""
    frames = []
    for p in packets:
        if rng.random() < 0.05:
            frames.append(b"$\x01" + (8).to_bytes(2, "big") + bytes(8))  # RTCP
        if rng.random() < 0.03:
            body = b"x" * rng.randrange(20)
            frames.append(
                b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
        if rng.random() < 0.03:  # another payload type, its own sequence
            frames.append(Packet(b"\x00" * 10, 5, rng.randrange(65536), True, -1, 97).frame())
        if rng.random() < 0.1:
            p.csrcs = [rng.randrange(2**32) for _ in range(rng.randrange(16))]
        if rng.random() < 0.1:
            p.extension = bytes(4 * rng.randrange(3))
        if rng.random() < 0.1:
            p.padding = rng.randrange(1, 40)
        frames.append(p.frame())
    return frames


def make_case(rng: random.Random, seeds: list[Seed]) -> Case:
    seed = rng.choice(seeds)
    mtu = rng.choice([40, 100, 200, 500, 1400, 4000])
    base = rng.choice([0, 2**32 - 200000, rng.randrange(2**32)])
    units = seed.units[: rng.randint(1, len(seed.units))]
    packets = packetize(Seed(seed.name, seed.hevc, units), rng, mtu, rng.random() < 0.8, base)
    case = Case(stream=b"", hevc=seed.hevc, keyframes=[rng.random() < 0.3 for _ in range(3)])
    roll = rng.random()
    if roll < 0.15:
        case.note = f"clean {seed.name} mtu {mtu}"
        case.keyframes = [False]
        case.stream = b"".join(_benign_extras(rng, packets))
        _driving(rng, case)
        case.expect = _expect(seed, units, packets, exact=True)
        return case
    if roll < 0.3:
        case.note = f"loss {seed.name} mtu {mtu}"
        case.keyframes = [False]
        kept = [p for p in packets if rng.random() > 0.15]
        case.stream = b"".join(p.frame() for p in kept)
        _driving(rng, case)
        case.expect = _expect(seed, units, kept, exact=False, sent=packets)
        return case
    if roll < 0.4:
        # keyframes_only on and off: units skipped are held in C and handed over
        # when next asked for every unit, in order; none invented, no key lost.
        case.note = f"clean {seed.name} mtu {mtu}, keyframes only now and then"
        case.keyframes = [rng.random() < 0.5 for _ in range(rng.randint(2, 6))] + [True]
        case.stream = b"".join(_benign_extras(rng, packets))
        _driving(rng, case)
        case.expect = _expect(seed, units, packets, exact=False)
        case.expect.subsequence = True
        return case
    if roll < 0.5:
        # Lossy and keyframes_only on and off: what is held never spans a hole.
        case.note = f"loss {seed.name} mtu {mtu}, keyframes only now and then"
        case.keyframes = [rng.random() < 0.5 for _ in range(rng.randint(2, 6))] + [True]
        kept = [p for p in packets if rng.random() > 0.1]
        case.stream = b"".join(p.frame() for p in kept)
        _driving(rng, case)
        case.expect = _expect(seed, units, kept, exact=False, sent=packets)
        case.expect.chained = True
        return case
    if roll < 0.52:
        case.note = "digits to the end of the buffer"

        case.stream, case.ahead = digits_to_the_end(rng)
        return case
    case.note = f"hostile {seed.name} mtu {mtu}"
    for _ in range(rng.choice([1, 1, 2, 3, 8])):
        if packets:
            mutate_packet(rng, rng.choice(packets), seed.hevc)
    if rng.random() < 0.2 and packets:
        del packets[rng.randrange(len(packets))]
    frames = [p.frame() for p in packets]
    for _ in range(rng.choice([0, 0, 1, 3])):
        frames.insert(rng.randrange(len(frames) + 1), rtsp_message(rng))
    data = bytearray(b"".join(frames))
    if rng.random() < 0.5:
        other = rng.choice(seeds)
        other_stream = b"".join(p.frame() for p in packetize(other, rng, mtu, True, base))
        for _ in range(rng.choice([1, 1, 2, 4])):
            mutate_bytes(rng, data, other_stream)
    case.stream = bytes(data)
    if rng.random() < 0.1:
        case.hevc = not case.hevc
    if rng.random() < 0.1:
        case.payload_type = -1
    _driving(rng, case)
    return case


def _expect(
    seed: Seed,
    units: list[AccessUnit],
    got: list[Packet],
    exact: bool,
    sent: list[Packet] | None = None,
) -> Expected:
    expected = Expected(exact)
    if not got:
        return expected
    origin = seed.units[got[0].unit].pts  # pts count from the first packet received
    received = {id(p) for p in got}
    for index, unit in enumerate(units):
        pts = unit.pts - origin
        whole = unit.annex_b()
        if sent is None or all(id(p) in received for p in sent if p.unit == index):
            expected.complete.append((digest(whole), pts, unit.key))
        expected.sent.append((digest(whole), pts, unit.key))

        nals = unit.nals
        expected.tails[pts] = {
            digest(AccessUnit(0, False, nals[k:]).annex_b()) for k in range(len(nals))
        }
    return expected
