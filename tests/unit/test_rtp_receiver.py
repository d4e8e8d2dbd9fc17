"""The C receive loop (_rtp.c) on crafted interleaved RTP, over a socket pair:
depacketization, access unit boundaries, keyframe skipping, losses, and the
RTSP answers a server mixes into the data."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamgrid.capture import _rtp, rtp
from tests.fuzz.case import Case
from tests.fuzz.isolated import Result, run_isolated

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


def test_units_skipped_for_a_late_keyframe_are_handed_over_when_asked(pair: Pair) -> None:
    """A camera stretching its GOP: the sampler waits for a keyframe, gives up,
    and asks for everything; the units since the last keyframe come first, in
    order, as they came (the chain to decode from that keyframe)."""
    assert _rtp.HOLDS_SKIPPED == 1
    ours, theirs = pair
    s = Sender(theirs)
    s.send(*key_unit(s, 0), *(s.packet(3600 * k, P_SLICE, marker=True) for k in range(1, 6)))
    r = reader(ours)
    assert unit(r, True)[1] == 0
    assert r.read(True, 0.2) is None  # the P units are held back, not handed out
    s.send(s.packet(3600 * 6, P_SLICE, marker=True))
    got = [unit(r) for _ in range(6)]
    assert [(g[1], g[2], g[0]) for g in got] == [
        (3600 * k, False, SC + P_SLICE) for k in range(1, 7)
    ]
    assert [g[5] for g in got] == [3600 * k for k in range(0, 6)]  # each one's predecessor
    assert r.counts[:3] == (7, 0, 0)


def test_a_keyframe_lets_go_of_what_was_held(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    s.send(*key_unit(s, 0), *(s.packet(3600 * k, P_SLICE, marker=True) for k in range(1, 4)))
    s.send(*key_unit(s, 36000), s.packet(39600, P_SLICE, marker=True))
    r = reader(ours)
    assert [unit(r, True)[1] for _ in range(2)] == [0, 36000]
    assert unit(r)[1] == 39600  # nothing from before the second keyframe
    assert r.counts[:3] == (3, 3, 0)


def test_a_loss_among_the_held_units_holds_nothing_more(pair: Pair) -> None:
    """A chain with a hole in it would decode to garbage: the units after the
    hole are not handed over as if whole."""
    ours, theirs = pair
    s = Sender(theirs)
    s.send(*key_unit(s, 0), s.packet(3600, P_SLICE, marker=True))
    s.send(s.packet(7200, P_SLICE, marker=True, skip=1))  # one packet lost before it
    s.send(s.packet(10800, P_SLICE, marker=True))
    r = reader(ours)
    assert unit(r, True)[1] == 0
    assert r.read(True, 0.2) is None
    s.send(s.packet(14400, P_SLICE, marker=True))
    assert unit(r)[1] == 14400  # the live one, nothing held from before the hole
    assert r.counts[2] == 1


def test_nothing_is_held_before_the_first_keyframe(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    s.send(*(s.packet(3600 * k, P_SLICE, marker=True) for k in range(1, 4)))
    r = reader(ours)
    assert r.read(True, 0.2) is None
    s.send(s.packet(3600 * 4, P_SLICE, marker=True))
    assert unit(r)[1] == 3600 * 3  # pts are relative to the first unit seen
    assert r.counts[:3] == (1, 3, 0)


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


# -- hostile streams (issue 11): each of these once crashed, hung or misled the loop --

# Slices that are the first of their picture (first_mb_in_slice = 0: the first
# bit after the header is 1), and one that is not.
IDR_FIRST = b"\x65\xb8" + bytes(range(200))
P_FIRST = b"\x41\x9a" + bytes(range(60))
IDR_SECOND_SLICE = b"\x65\x40" + bytes(range(100))


def isolated(tmp_path: Path, name: str, stream: bytes, **options: Any) -> Result:
    """One stream through a reader in a child process with a watchdog: on the
    code before issue 11 some of these hung (holding the GIL) or read past the
    buffer."""
    path = tmp_path / f"{name}.case"
    path.write_bytes(Case(stream=stream, **options).dump())
    (result,) = run_isolated([path], timeout=20.0)
    return result


def answer_with_its_own_length_subtracted(template: bytes, modulo: int | None) -> bytes:
    """An RTSP answer whose Content-Length is minus its own header's length (as
    a negative number, or wrapped around 2**64): skipping it moved nowhere."""
    value = 0
    for _ in range(5):
        text = str(-value if modulo is None else modulo - value).encode()
        answer = template.replace(b"N", text)
        value = len(answer)
    assert len(template.replace(b"N", text)) == value
    return answer


@pytest.mark.parametrize(
    ("modulo", "error"),
    [
        (None, "an RTSP message in the data has a malformed Content-Length"),
        (2**64, "an RTSP message in the data has a body over 64 KiB"),
    ],
    ids=["negative", "wrapped"],
)
def test_a_negative_content_length_is_an_error_not_an_endless_loop(
    tmp_path: Path, modulo: int | None, error: str
) -> None:
    with socket.socket() as unused:
        s = Sender(unused)
    answer = answer_with_its_own_length_subtracted(
        b"RTSP/1.0 200 OK\r\nCSeq: 9\r\nContent-Length: N\r\n\r\n", modulo
    )
    stream = b"".join(key_unit(s, 0)) + answer + b"".join(key_unit(s, 3600))
    result = isolated(tmp_path, "negative", stream)
    assert result.status == "ok", result.detail
    assert result.detail == error
    assert result.units == [(len(SC + SPS + SC + PPS + SC + IDR), 0, True)]


def test_a_status_line_without_a_status_reads_nothing_past_the_header(tmp_path: Path) -> None:
    """atoi() skipped the CR LF CR LF and read the digits after it, to the end of
    the 256 KiB buffer and beyond."""
    stream = b"RTSP/1.0 \r\n\r\n" + b"7" * (256 * 1024 - 13)
    result = isolated(tmp_path, "status", stream, ahead=256 * 1024)
    assert result.status == "ok", result.detail
    assert result.last_status == 0  # no status: the line has none


def test_a_content_length_without_digits_reads_nothing_past_the_header(tmp_path: Path) -> None:
    stream = b"RTSP/1.0 200 OK\r\nContent-Length: \r\n\r\n" + b"7" * (256 * 1024 - 37)
    result = isolated(tmp_path, "length", stream, ahead=256 * 1024)
    assert result.status == "ok", result.detail
    assert result.detail == "an RTSP message in the data has a malformed Content-Length"
    assert result.last_status == 200


@pytest.mark.parametrize(
    "value", [b"abc", b"5x", b"+5", b"0x10", b"", b"5 5", b"\xd9\xa5"], ids=repr
)
def test_a_malformed_content_length_is_an_os_error(pair: Pair, value: bytes) -> None:
    ours, theirs = pair
    theirs.sendall(b"RTSP/1.0 200 OK\r\nContent-Length: " + value + b"\r\n\r\nhello")
    with pytest.raises(OSError, match="malformed Content-Length"):
        reader(ours).read(False, 1.0)


def test_a_body_larger_than_an_answer_has_is_an_os_error(pair: Pair) -> None:
    ours, theirs = pair
    theirs.sendall(b"RTSP/1.0 200 OK\r\nContent-Length: 65537\r\n\r\n")
    r = reader(ours)
    with pytest.raises(OSError, match="body over 64 KiB"):
        r.read(False, 1.0)
    with pytest.raises(OSError, match="body over 64 KiB"):  # and it stays so
        r.read(False, 1.0)


def test_content_length_with_spaces_any_case_and_the_status_of_each_answer(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    s.send(
        b"RTSP/1.0 454 Session Not Found\r\ncontent-length: \t 5 \r\n\r\nhello",
        b"\r\n",  # a stray line end between frames
        *key_unit(s, 0),
        b"RTSP/1.0 2000 Too Long\r\n\r\n",  # not a status: the last one stays
    )
    r = reader(ours)
    assert unit(r)[1] == 0
    assert r.read(False, 0.2) is None
    assert r.last_status == 454 and r.counts[3] == 2


def test_a_message_that_never_ends_is_skipped_and_reading_goes_on(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    junk = b"GET_PARAMETER rtsp://x RTSP/1.0\r\nX: " + b"y" * 70000
    sender = threading.Thread(target=s.send, args=(junk, *key_unit(s, 0)))
    sender.start()
    r = reader(ours)
    got = unit(r)
    sender.join()
    assert got[1] == 0 and r.counts[3] == 1


def test_a_unit_that_lost_its_last_fragment_is_dropped_and_the_next_handed(pair: Pair) -> None:
    """The end fragment is lost and the next packet has a new timestamp: the
    truncated unit was handed out and the whole next one dropped."""
    ours, theirs = pair
    s = Sender(theirs)
    pieces = fu_a(IDR_FIRST, 3)
    nxt = [s.packet(3600, p, marker=i == 2) for i, p in enumerate(fu_a(P_FIRST, 3))]
    s.send(s.packet(0, pieces[0]), s.packet(0, pieces[1]))
    s.seq += 1  # pieces[2] never came
    s.send(*nxt)
    r = reader(ours)
    data, pts, *_ = unit(r)
    assert (data, pts) == (SC + P_FIRST, 3600)
    assert r.counts[:3] == (1, 0, 1)


def test_a_unit_without_its_marker_across_a_gap_is_dropped(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    s.send(s.packet(0, stap_a(SPS, PPS)), s.packet(0, IDR_FIRST))
    s.seq += 1  # the unit's last packet (with the marker) never came
    s.send(s.packet(3600, P_FIRST, marker=True))
    r = reader(ours)
    assert unit(r)[:2] == (SC + P_FIRST, 3600)
    assert r.counts[:3] == (1, 0, 1)


def test_a_gap_after_a_marker_does_not_drop_the_next_whole_unit(pair: Pair) -> None:
    """A whole unit lost between two: the one after starts with its first slice."""
    ours, theirs = pair
    s = Sender(theirs)
    s.send(*key_unit(s, 0))
    s.seq += 2  # the unit at 3600 never came
    s.send(*[s.packet(7200, p, marker=i == 1) for i, p in enumerate(fu_a(P_FIRST, 2))])
    r = reader(ours)
    assert unit(r)[1] == 0
    assert unit(r)[:2] == (SC + P_FIRST, 7200)
    assert r.counts[:3] == (2, 0, 0)


def test_a_unit_that_lost_its_first_slice_is_dropped(pair: Pair) -> None:
    """After a gap, a unit whose first slice is not its picture's first lost its head."""
    ours, theirs = pair
    s = Sender(theirs)
    s.send(*key_unit(s, 0))
    s.seq += 1  # the first slice of the unit at 3600
    s.send(s.packet(3600, IDR_SECOND_SLICE, marker=True))
    s.send(s.packet(7200, P_FIRST, marker=True))
    r = reader(ours)
    assert unit(r)[1] == 0
    assert unit(r)[:2] == (SC + P_FIRST, 7200)
    assert r.counts[:3] == (2, 0, 1)


def test_a_gap_inside_a_unit_with_the_same_timestamp_drops_it(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    s.send(s.packet(0, IDR_FIRST))
    s.seq += 1
    s.send(s.packet(0, IDR_SECOND_SLICE, marker=True), s.packet(3600, P_FIRST, marker=True))
    r = reader(ours)
    assert unit(r)[:2] == (SC + P_FIRST, 3600)
    assert r.counts[:3] == (1, 0, 1)


@pytest.mark.parametrize("how", ["continuation without start", "marker mid-fragment", "no end"])
def test_broken_fragments_drop_their_unit_only(pair: Pair, how: str) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    pieces = fu_a(IDR_FIRST, 3)
    if how == "continuation without start":
        broken = [s.packet(0, pieces[1]), s.packet(0, pieces[2], marker=True)]
    elif how == "marker mid-fragment":
        broken = [s.packet(0, pieces[0]), s.packet(0, pieces[1], marker=True)]
    else:  # no gap, no marker: the fragment is still open at the next timestamp
        broken = [s.packet(0, pieces[0]), s.packet(0, pieces[1])]
    s.send(*broken, s.packet(3600, P_FIRST, marker=True))
    r = reader(ours)
    assert unit(r)[:2] == (SC + P_FIRST, 3600)
    assert r.counts[:3] == (1, 0, 1)


def test_hevc_a_unit_that_lost_its_first_slice_segment_is_dropped(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    first = b"\x02\x01\x80" + bytes(30)  # TRAIL_R, first_slice_segment_in_pic_flag = 1
    later = b"\x02\x01\x40" + bytes(30)  # a later segment of its picture
    s.send(s.packet(0, first, marker=True))
    s.seq += 1
    s.send(s.packet(3600, later, marker=True), s.packet(7200, first, marker=True))
    r = _rtp.RtpReader(ours.fileno(), 0, 96, True, 5.0, b"")
    assert unit(r)[:2] == (SC + first, 0)
    assert unit(r)[:2] == (SC + first, 7200)
    assert r.counts[:3] == (2, 0, 1)


def raw_packet(seq: int, ts: int, payload: bytes, first: int = 0x80, marker: bool = True) -> bytes:
    data = bytes([first, (0x80 if marker else 0) | 96]) + seq.to_bytes(2, "big")
    data += ts.to_bytes(4, "big") + b"\x11\x22\x33\x44" + payload
    return b"$\x00" + len(data).to_bytes(2, "big") + data


@pytest.mark.parametrize(
    "bad",
    [
        raw_packet(1, 0, b"\x00\x01\x03\xe8" + IDR_FIRST, 0x90, False),  # extension past the end
        raw_packet(1, 0, b"\x11" * 8, 0x8F, False),  # 15 CSRCs in 8 bytes
        raw_packet(1, 0, IDR_FIRST[:20] + b"\xff", 0xA0, False),  # padding past the payload
        raw_packet(1, 0, b"\x60", 0x80, False),  # an H.264 type-0 NAL: refused
        raw_packet(1, 0, b"", 0x80, False),  # header only
    ],
    ids=["extension", "csrc", "padding", "nal type", "empty"],
)
def test_a_malformed_packet_is_ignored_and_breaks_only_its_unit(pair: Pair, bad: bytes) -> None:
    ours, theirs = pair
    theirs.sendall(
        raw_packet(0, 0, IDR_FIRST[:50], marker=False)
        + bad
        + raw_packet(2, 0, IDR_FIRST[50:], marker=True)
        + raw_packet(3, 3600, P_FIRST)
        + b"$\x00\x00\x00"  # an empty interleaved frame
        + raw_packet(4, 7200, P_FIRST)
    )
    r = reader(ours)
    assert unit(r)[:2] == (SC + P_FIRST, 3600)
    assert unit(r)[:2] == (SC + P_FIRST, 7200)
    assert r.counts[2] == 1


def test_hevc_aggregates_with_short_or_odd_sizes_are_dropped(pair: Pair) -> None:
    ours, theirs = pair
    first = b"\x02\x01\x80" + bytes(30)
    theirs.sendall(
        raw_packet(0, 0, b"\x60")  # an AP with half its payload header
        + raw_packet(1, 3600, b"\x60\x01\x00\x05\x40\x01")  # a size past its end
        + raw_packet(2, 7200, b"\x62\x01\xc1")  # a FU, start and end, no payload
        + raw_packet(3, 10800, first)
    )
    r = _rtp.RtpReader(ours.fileno(), 0, 96, True, 5.0, b"")
    assert unit(r)[:2] == (SC + b"\x02\x01", 7200)
    assert unit(r)[:2] == (SC + first, 10800)
    assert r.counts[2] == 2


def test_a_reader_cannot_be_initialized_twice(pair: Pair) -> None:
    ours, _ = pair
    r = reader(ours)
    with pytest.raises(TypeError):
        r.__init__(ours.fileno(), 0, 96, False, 5.0, b"")  # type: ignore[misc]


def test_a_whole_unit_lost_between_held_ones_breaks_the_hold(pair: Pair) -> None:
    """P2 lost whole, P3 arrives clean (its first slice is its picture's first,
    so it is kept): P1, P3 must not be handed over as a chain from the keyframe."""
    ours, theirs = pair
    s = Sender(theirs)
    s.send(*key_unit(s, 0), s.packet(3600, P_FIRST, marker=True))
    s.send(s.packet(10800, P_FIRST, marker=True, skip=1))  # the unit at 7200 never came
    r = reader(ours)
    assert unit(r, True)[1] == 0 and not r.chain_broken
    assert r.read(True, 0.2) is None
    s.send(s.packet(14400, P_FIRST, marker=True))
    _data, pts, key, *_ = unit(r)
    assert (pts, key) == (14400, False)  # nothing held from across the hole
    assert r.chain_broken  # and the caller is told this one follows a hole
    s.send(*key_unit(s, 36000))
    assert unit(r)[2] and not r.chain_broken  # a keyframe starts the chain afresh


def test_a_lost_unit_in_every_unit_mode_is_flagged_too(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    s.send(*key_unit(s, 0), s.packet(3600, P_FIRST, marker=True))
    s.send(s.packet(10800, P_FIRST, marker=True, skip=1))
    r = reader(ours)
    assert unit(r)[1] == 0
    assert unit(r)[1] == 3600 and not r.chain_broken
    assert unit(r)[1] == 10800 and r.chain_broken


def test_an_error_in_the_data_stands_before_anything_held(pair: Pair) -> None:
    ours, theirs = pair
    s = Sender(theirs)
    s.send(*key_unit(s, 0), s.packet(3600, P_SLICE, marker=True))
    s.send(b"RTSP/1.0 200 OK\r\nContent-Length: -4\r\n\r\n")
    r = reader(ours)
    assert unit(r, True)[1] == 0
    with pytest.raises(OSError, match="malformed Content-Length"):
        r.read(True, 0.5)
    with pytest.raises(OSError, match="malformed Content-Length"):
        r.read(False, 0.5)  # not the unit held before the error


# -- the receive thread (issue 22) ---------------------------------------------


def threads() -> int:
    return len(list(Path("/proc/self/task").iterdir()))


def test_a_unit_is_stamped_when_it_came_not_when_it_was_read(pair: Pair) -> None:
    """The worker is still busy with one unit (decoding it) when the next comes:
    the next one's time is when it became readable, not when the worker got
    back to the socket (a keyframe so stamped looked a second late at 128
    streams, and its sample was lost)."""
    ours, theirs = pair
    s = Sender(theirs)
    r = reader(ours)
    s.send(*key_unit(s, 0))
    unit(r)
    sent = time.monotonic()
    s.send(s.packet(3600, P_SLICE, marker=True))
    time.sleep(0.5)  # the worker's decode of the first unit
    read_at = time.monotonic()
    arrived = unit(r)[3]
    assert arrived - sent < 0.2, arrived - sent
    assert read_at - arrived > 0.3


def test_a_reader_behind_by_more_than_its_queue_loses_nothing(pair: Pair) -> None:
    """4 MB sent while the worker reads nothing: the receive thread stops at its
    bound (the socket holds the rest back) and every unit comes, in order."""
    ours, theirs = pair
    s = Sender(theirs)
    slice_ = b"\x41" + bytes(range(256)) * 5
    stream = key_unit(s, 0)
    stream += [
        s.packet(3600 * n, slice_ + n.to_bytes(4, "big"), marker=True) for n in range(1, 3000)
    ]
    sender = threading.Thread(target=s.send, args=stream)
    r = reader(ours)
    sender.start()
    assert unit(r)[2] is True
    sender.join(0.5)
    assert sender.is_alive()  # held back: neither the queue nor the socket took it all
    for n in range(1, 3000):
        data, pts, key, *_ = unit(r)
        assert (data, pts, key) == (SC + slice_ + n.to_bytes(4, "big"), 3600 * n, False)
    sender.join(5)
    assert r.counts[:3] == (3000, 0, 0)


def test_after_close_the_socket_is_the_callers_again(pair: Pair) -> None:
    """The session reads TEARDOWN's answer itself after close(): the receive
    thread is gone by then, and has taken none of it."""
    ours, theirs = pair
    before = threads()
    s = Sender(theirs)
    r = reader(ours)
    s.send(*key_unit(s, 0))
    unit(r)
    assert threads() == before + 1
    r.close()
    assert threads() == before
    theirs.sendall(b"RTSP/1.0 200 OK\r\nCSeq: 9\r\n\r\n")
    ours.settimeout(2)
    assert ours.recv(100) == b"RTSP/1.0 200 OK\r\nCSeq: 9\r\n\r\n"
    with pytest.raises(ValueError, match="closed"):
        r.read(False, 0.1)
