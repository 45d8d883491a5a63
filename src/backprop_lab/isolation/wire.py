"""What passes between the lab and a learner's process: small JSON messages on a Unix socket, and tensors in sealed
memory files beside them.

Nothing that comes from the learner's side is unpickled or trusted: a message is JSON, bounded in size, and a
tensor is bytes in a memory file (memfd) that its writer sealed against further writes, read back by the lab into
a plain `torch.Tensor` of a dtype and shape it checked against the file's size. A sealed file cannot change after
the lab has checked it, and the lab's own inputs, sealed too, cannot be changed by the child: the child maps them
copy-on-write, so an in-place change stays in its own pages.
"""

from __future__ import annotations

import fcntl
import json
import math
import mmap
import os
import select
import socket
import time
from typing import Any, Optional

import torch

MAX_MESSAGE = 1 << 20  # bytes of JSON: every message is a few KiB; an error's text is cut well below this
SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}
MAX_DIMS = 8
ALIGN = 64


class WireError(Exception):
    """What came from the other side is not a message of the protocol (or nothing came: the peer is gone)."""


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
        raise WireError("the other side closed its end")
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


def pack(tensors: dict[str, torch.Tensor]) -> tuple[list[dict], int]:
    """The tensors' bytes in one sealed memory file, and where each is in it: (manifest, the file's descriptor)."""
    manifest, offset = [], 0
    plain = {}
    for name, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        plain[name] = t
        manifest.append({"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                         "offset": offset})  # fmt: skip
        offset += -(-t.numel() * t.element_size() // ALIGN) * ALIGN
    fd = os.memfd_create("backprop-lab-tensors", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
    try:
        if offset:
            os.ftruncate(fd, offset)
            with mmap.mmap(fd, offset, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE) as mm:
                for entry, t in zip(manifest, plain.values()):
                    if t.numel():
                        _bytes_view(mm, entry["offset"], t).copy_(t.reshape(-1).view(torch.uint8))
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return manifest, fd


def sealed_bytes(data: bytes) -> int:
    """`data` in a sealed memory file, exactly (a file's source, as the lab read and hashed it)."""
    fd = os.memfd_create("backprop-lab-bytes", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _bytes_view(mm: mmap.mmap, offset: int, t: torch.Tensor) -> torch.Tensor:
    n = t.numel() * t.element_size()
    return torch.frombuffer(mm, dtype=torch.uint8, count=n, offset=offset)


def unpack(manifest: Any, fd: int, names: Optional[set[str]] = None) -> dict[str, torch.Tensor]:
    """Plain tensors over the sealed file `fd` (mapped copy-on-write: changing one changes no one else's), each
    checked against the manifest's claims: a known dtype, a shape that fits the file, names from `names`. A file
    that is not sealed, or a manifest that does not fit it, is a WireError."""
    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    if seals & SEALS != SEALS:
        raise WireError("a tensor file that was not sealed against writes")
    size = os.fstat(fd).st_size
    if not isinstance(manifest, list):
        raise WireError("a tensor manifest that is not a list")
    mm = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE) if size else None
    out = {}
    for entry in manifest:
        name, dtype, shape, offset = _entry(entry, names)
        numel = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if offset % ALIGN or offset + numel * itemsize > size or name in out:
            raise WireError(f"tensor {name!r}: does not fit its file")
        if numel == 0:
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        out[name] = torch.frombuffer(mm, dtype=dtype, count=numel, offset=offset).view(shape)
    return out


def _entry(entry: Any, names: Optional[set[str]]) -> tuple[str, torch.dtype, list[int], int]:
    if not isinstance(entry, dict):
        raise WireError("a tensor entry that is not an object")
    name, dtype, shape, offset = (entry.get(k) for k in ("name", "dtype", "shape", "offset"))
    if not isinstance(name, str) or (names is not None and name not in names):
        raise WireError(f"a tensor named {str(name)[:40]!r}, not one asked for")
    if dtype not in DTYPES:
        raise WireError(f"tensor {name!r}: dtype {str(dtype)[:40]!r} is not one the lab reads")
    if not is_shape(shape) or not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise WireError(f"tensor {name!r}: a shape or offset that is not one")
    return name, DTYPES[dtype], shape, offset


def is_shape(shape: Any) -> bool:
    return (isinstance(shape, list) and len(shape) <= MAX_DIMS
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**40 for n in shape))  # fmt: skip
