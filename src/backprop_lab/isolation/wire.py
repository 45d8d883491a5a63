"""The messages between the lab and a learner's process (and the fork server): small JSON objects on a Unix socket,
one per read, with the file descriptors that travel beside them (sealed.py's tensor files). Nothing that comes from
the learner's side is unpickled: a message is JSON, bounded in size, and anything else is a WireError. No torch
here: the lab starts the fork server before it has imported torch itself."""

from __future__ import annotations

import json
import os
import select
import socket
import time
from typing import Optional

MAX_MESSAGE = 1 << 20  # bytes of JSON: every message is a few KiB; an error's text is cut well below this


class WireError(Exception):
    """What came from the other side is not a message of the protocol (or nothing came: the peer is gone)."""


class Closed(WireError):
    """The other side closed its end: its process is gone (or going)."""


class Expired(Exception):
    """No message before the deadline."""


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """Message-preserving, so that one read is one message and its file descriptors."""
    lab, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (lab, child):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * MAX_MESSAGE)
    return lab, child


def send(sock: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(message, allow_nan=True).encode()
    if len(data) > MAX_MESSAGE:
        raise WireError(f"a message of {len(data)} bytes, over {MAX_MESSAGE}")
    socket.send_fds(sock, [data], list(fds)) if fds else sock.sendall(data)


def receive(sock: socket.socket, deadline: Optional[float] = None, max_fds: int = 2) -> tuple[dict, list[int]]:
    """The next message and the file descriptors that came with it (the caller closes them). `deadline`: a
    time.monotonic() after which Expired is raised; None waits as long as it takes."""
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise Expired
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE + 1, max_fds)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(data) > MAX_MESSAGE:
        close_all(fds)
        raise WireError("a message too long, or with too many file descriptors")
    if not data:
        close_all(fds)
        raise Closed("the other side closed its end")
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        close_all(fds)
        raise WireError("a message that is not JSON") from None
    if not isinstance(message, dict):
        close_all(fds)
        raise WireError("a message that is not a JSON object")
    return message, fds


def close_all(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
