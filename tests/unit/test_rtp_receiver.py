"""The C receive loop (_rtp.c) on crafted interleaved RTP, over a socket pair:
depacketization, access unit boundaries, keyframe skipping, losses, and the
RTSP answers a server mixes into the data."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from streamgrid.capture import _rtp, rtp

SC = b"\x00\x00\x00\x01"
SPS, PPS = b"\x67\x42\xc0\x0d\xda", b"\x68\xce\x3c\x80"
IDR = b"\x65" + bytes(range(200))  # type 5
P_SLICE = b"\x41" + bytes(range(60))  # type 1


Unit = tuple[bytes, int, bool, float, float | None, int | None]


def test_the_receiver_is_built() -> None:
    assert rtp.unavailable() is None


Pair = tuple[socket.socket, socket.socket]


@pytest.fixture
def pair() -> Iterator[Pair]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


class Sender:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.seq = sock, 1000

    def packet(self, ts: int, payload: bytes, marker: bool = False, skip: int = 0) -> bytes:
        self.seq += 1 + skip
        header = bytes([0x80, (0x80 if marker else 0) | 96]) + (self.seq & 0xFFFF).to_bytes(
            2, "big"
        )
        data = header + ts.to_bytes(4, "big") + b"\x11\x22\x33\x44" + payload
        return b"$\x00" + len(data).to_bytes(2, "big") + data

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))


def fu_a(nal: bytes, pieces: int) -> list[bytes]:
    indicator = (nal[0] & 0xE0) | 28
    body, step = nal[1:], -(-len(nal[1:]) // pieces)
    out = []
    for i in range(pieces):
        fu = nal[0] & 0x1F | (0x80 if i == 0 else 0) | (0x40 if i == pieces - 1 else 0)
        out.append(bytes([indicator, fu]) + body[i * step : (i + 1) * step])
    return out


def stap_a(*nals: bytes) -> bytes:
    return b"\x18" + b"".join(len(n).to_bytes(2, "big") + n for n in nals)


def key_unit(s: Sender, ts: int) -> list[bytes]:
    pieces = fu_a(IDR, 3)
    return [s.packet(ts, stap_a(SPS, PPS))] + [
        s.packet(ts, p, marker=i == len(pieces) - 1) for i, p in enumerate(pieces)
    ]


def reader(sock: socket.socket, timeout: float = 5.0, ahead: bytes = b"") -> _rtp.RtpReader:
    return _rtp.RtpReader(sock.fileno(), 0, 96, False, timeout, ahead)


def unit(r: _rtp.RtpReader, keyframes_only: bool = False) -> Unit:
    got = r.read(keyframes_only, 1.0)
    assert got is not None, "no access unit within 1 s"
    return got


def test_access_units_in_annex_b_with_their_timestamps(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    s.send(*key_unit(s, 90000), s.packet(93600, P_SLICE, marker=True))
    r = reader(ours)
    data, pts, key, arrived, previous_arrived, previous_pts = unit(r)
    assert data == SC + SPS + SC + PPS + SC + IDR
    assert (pts, key, previous_arrived, previous_pts) == (0, True, None, None)
    data, pts, key, _arrived2, previous_arrived, previous_pts = unit(r)
    assert (data, pts, key, previous_pts) == (SC + P_SLICE, 3600, False, 0)
    assert previous_arrived == arrived
    assert r.counts == (2, 0, 0, 0)
    assert r.read(False, 0.1) is None  # nothing more: None after max_wait


def test_keyframes_only_skips_the_rest_uncopied(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    frames = []
    for i in range(3):
        frames += key_unit(s, i * 36000)
        frames += [s.packet(i * 36000 + 3600 * k, P_SLICE, marker=True) for k in range(1, 10)]
    s.send(*frames)
    r = reader(ours)
    got = [unit(r, True) for _ in range(3)]
    assert [g[1] for g in got] == [0, 36000, 72000]
    assert all(g[2] and g[0].endswith(IDR) for g in got)
    # The unit before each keyframe was skipped in C, yet it is what came before.
    assert [g[5] for g in got[1:]] == [32400, 68400]
    assert r.counts[:3] == (3, 18, 0)


def test_a_unit_ends_at_the_next_timestamp_and_the_next_is_parsed_afresh(pair: Pair) -> None:
    """Without a marker bit, a unit ends when the next one starts; that next
    packet is left for the next read, under that read's keyframes_only."""
    ours, theirs = pair
    s = Sender(theirs)
    s.send(s.packet(0, IDR), s.packet(3600, P_SLICE), s.packet(7200, IDR, marker=True))
    r = reader(ours)
    assert unit(r, True)[1] == 0
    second = unit(r)
    assert second[1] == 3600 and not second[2]  # not skipped: asked for everything now
    assert unit(r, True)[1] == 7200


def test_a_lost_fragment_drops_the_unit(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    pieces = fu_a(IDR, 3)
    s.send(
        s.packet(0, pieces[0]),
        s.packet(0, pieces[2], marker=True, skip=1),  # pieces[1] never came
        *key_unit(s, 36000),
    )
    r = reader(ours)
    got = unit(r)
    assert got[1] == 36000 and got[0].endswith(IDR)
    assert r.counts[2] == 1  # dropped


def test_rtsp_answers_and_rtcp_in_the_data_are_skipped(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    answer = b"RTSP/1.0 200 OK\r\nCSeq: 7\r\nContent-Length: 5\r\n\r\nhello"
    rtcp = b"$\x01\x00\x08" + bytes(8)
    frames = key_unit(s, 0)
    # Split mid-answer too: the loop must wait for the rest of it.
    s.send(frames[0], answer[:20])
    r = reader(ours)
    assert r.read(False, 0.2) is None
    s.send(answer[20:], rtcp, *frames[1:])
    got = unit(r)
    assert got[0] == SC + SPS + SC + PPS + SC + IDR
    assert r.counts[3] == 1 and r.last_status == 200


def test_parameter_sets_alone_join_the_next_unit(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    s.send(s.packet(0, stap_a(SPS, PPS), marker=True), s.packet(3600, IDR, marker=True))
    got = unit(reader(ours), True)
    assert got[0] == SC + SPS + SC + PPS + SC + IDR and got[2]


def test_bytes_read_ahead_by_the_handshake_come_first(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    first = b"".join(key_unit(s, 0))
    s.send(s.packet(3600, P_SLICE, marker=True))
    r = reader(ours, ahead=first)
    assert unit(r)[1] == 0
    assert unit(r)[1] == 3600


def test_hevc_fragments_and_aggregates(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    vps, sps, pps = b"\x40\x01\xaa", b"\x42\x01\xbb", b"\x44\x01\xcc"
    idr = b"\x26\x01" + bytes(range(90))  # type 19, IDR_W_RADL
    trail = b"\x02\x01" + bytes(30)  # type 1
    ap = b"\x60\x01" + b"".join(len(n).to_bytes(2, "big") + n for n in (vps, sps, pps))
    fu = [b"\x62\x01\x93" + idr[2:50], b"\x62\x01\x53" + idr[50:]]  # S, then E, type 19
    s.send(s.packet(0, ap), s.packet(0, fu[0]), s.packet(0, fu[1], marker=True))
    s.send(s.packet(3600, trail, marker=True))
    r = _rtp.RtpReader(ours.fileno(), 0, 96, True, 5.0, b"")
    data, _, key, *_ = unit(r)
    assert data == SC + vps + SC + sps + SC + pps + SC + idr and key
    assert unit(r)[2] is False


def test_end_of_stream_read_timeout_and_interrupt(pair: Pair) -> None:
    ours, theirs = pair
    r = reader(ours, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        while True:
            r.read(False, 0.1)
    assert 0.25 < time.monotonic() - started < 1.0
    r = reader(ours)
    threading.Timer(0.2, r.interrupt).start()
    started = time.monotonic()
    assert r.read(False, 5.0) is None
    assert time.monotonic() - started < 1.0
    r = reader(ours)
    theirs.close()
    with pytest.raises(EOFError):
        unit(r)


def test_any_split_of_the_byte_stream_gives_the_same_units(pair: Pair) -> None:
    """TCP cuts the stream anywhere: mid-header, mid-payload, mid-fragment."""
    ours, theirs = pair
    s = Sender(theirs)
    stream = b"".join([*key_unit(s, 0), s.packet(3600, P_SLICE, marker=True)])
    r = reader(ours)
    got = []
    for i in range(0, len(stream), 7):
        theirs.sendall(stream[i : i + 7])
        step = r.read(False, 0.05)
        if step is not None:
            got.append(step)
    while len(got) < 2:
        got.append(unit(r))
    assert [g[0] for g in got] == [SC + SPS + SC + PPS + SC + IDR, SC + P_SLICE]
    assert r.counts[:3] == (2, 0, 0)
