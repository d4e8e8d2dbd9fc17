"""The fork server's messages (core/forking.py) over a real SOCK_SEQPACKET pair."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from streamgrid.core import forking

Pair = tuple[socket.socket, socket.socket]


@pytest.fixture
def pair() -> Iterator[Pair]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_a_message_and_its_fds_arrive_together(pair: Pair) -> None:
    ours, theirs = pair
    read_end, write_end = os.pipe()
    forking.send(ours, {"env": {"STREAMGRID_STREAM_ID": "abc"}}, [write_end])
    os.close(write_end)
    got = forking.receive(theirs, max_fds=2)
    assert got is not None
    message, fds = got
    assert message == {"env": {"STREAMGRID_STREAM_ID": "abc"}} and len(fds) == 1
    os.write(fds[0], b"x")  # the same pipe, passed
    os.close(fds[0])
    assert os.read(read_end, 1) == b"x"
    os.close(read_end)


def test_the_other_side_gone_is_none(pair: Pair) -> None:
    ours, theirs = pair
    ours.close()
    assert forking.receive(theirs) is None


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]"])
def test_what_is_not_a_message_is_refused_and_its_fds_closed(pair: Pair, data: bytes) -> None:
    ours, theirs = pair
    read_end, write_end = os.pipe()
    socket.send_fds(ours, [data], [write_end])
    os.close(write_end)
    with pytest.raises(forking.ProtocolError):
        forking.receive(theirs, max_fds=1)
    assert os.read(read_end, 1) == b""  # every write end closed: EOF
    os.close(read_end)


def test_more_fds_than_asked_for_are_refused(pair: Pair) -> None:
    ours, theirs = pair
    ends = [os.pipe() for _ in range(2)]
    forking.send(ours, {"env": {}}, [w for _, w in ends])
    for _, w in ends:
        os.close(w)
    with pytest.raises(forking.ProtocolError, match="too long"):
        forking.receive(theirs, max_fds=1)
    for r, _ in ends:
        assert os.read(r, 1) == b""
        os.close(r)
