"""Tensors and bytes in sealed memory files: how the big data crosses between the lab and a learner's process,
shared rather than copied.

A writer puts the bytes in a memory file (memfd) and seals it against any further write; the reader maps it
copy-on-write. The lab reads what the child hands back into a plain `torch.Tensor` of a dtype and shape it checked
against the file's size, and a sealed file cannot change after the lab has checked it. The lab's own inputs are
sealed too: a child that changes them in place changes only its own pages.
"""

from __future__ import annotations

import fcntl
import math
import mmap
import os
from typing import Any, Optional

import torch

from backprop_lab.isolation.wire import WireError

SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}
MAX_DIMS = 8
SMALL = 1 << 16  # entries: a gradient of another shape than its node's is sent whole up to this size, never more
ALIGN = 64


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
