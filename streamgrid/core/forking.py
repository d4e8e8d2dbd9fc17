"""The embedded runtime's fork server, as both sides see it: the gateway
(gateway/forkserver.py) asks the template process (capture/forkserver.py)
for capture workers over a Unix SOCK_SEQPACKET socket pair, one JSON message
a packet, file descriptors alongside (SCM_RIGHTS).

- template -> gateway, once its imports are done: ``{"ready": <its pid>}``;
- gateway -> template: ``{"env": {...}}`` with one fd, the worker's stdout;
- template -> gateway: ``{"pid": <the worker's>}`` or ``{"error": "<why>"}``.

The environment of the template process reserves ``STREAM_ID_ROOM`` in
``STREAMGRID_STREAM_ID``: each worker writes its own stream's id there, so its
/proc/<pid>/environ names its stream as an exec'd worker's does.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from typing import Any

SOCKET_FD_ENV = "STREAMGRID_FORKSERVER_FD"  # the template's end of the pair
MODULE = "streamgrid.capture.forkserver"
STREAM_ID_ENV = "STREAMGRID_STREAM_ID"
STREAM_ID_ROOM = "-" * 63  # no stream id is all dashes, and none is longer (core/models.py)
MAX_MESSAGE = 1 << 20  # an environment is a few kB


class ProtocolError(OSError):
    """The other side sent something that is not a message of this protocol."""


def send(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    socket.send_fds(sock, [json.dumps(message).encode()], list(fds))


def receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any], list[int]] | None:
    """The next message and the fds that came with it; None when the other
    side has gone (its end closed)."""
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, max_fds)
    try:
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ProtocolError("fork server: a message too long")
        if not data and not fds:
            return None
        message = json.loads(data)
        if not isinstance(message, dict):
            raise ProtocolError("fork server: a message that is not an object")
    except (ProtocolError, ValueError) as exc:
        for fd in fds:
            socket.close(fd)
        raise ProtocolError(str(exc)) from None
    return message, fds
