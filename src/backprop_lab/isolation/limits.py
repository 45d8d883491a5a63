"""The memory a learner's process may take: `impl.memory_limit_gib`, or by default what the machine can spare."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Optional

from backprop_lab.config.validation import MIN_CHILD_GIB, memory_available

SPARE_SHARE = 0.75  # of the memory free when the child starts: the rest is the lab's, to judge what comes back
MIN_BYTES = int(MIN_CHILD_GIB * 2**30)


@cache
def spare_bytes() -> int:
    """What the machine can spare: SPARE_SHARE of the kernel's MemAvailable, or of the room left under this
    process's cgroup limit where that is less; read once per lab process, so that a sweep's children share one
    limit (and its runs one param)."""
    available = memory_available() or 0
    cgroup = Path("/sys/fs/cgroup")
    try:
        cap = (cgroup / "memory.max").read_text().strip()
        if cap != "max":
            available = min(available, int(cap) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(int(available * SPARE_SHARE), MIN_BYTES)


def memory_limit_bytes(gib: Optional[float]) -> int:
    return spare_bytes() if gib is None else int(gib * 2**30)


def apply(limit: int) -> None:
    """In the learner's process, before its code runs: `limit` bytes of private memory (RLIMIT_DATA, what torch's
    allocations and Python's take), and of any mapping besides what the process has mapped already (RLIMIT_AS:
    torch's libraries and stacks, as they stand, plus the limit), so that a shared mapping (`mmap(-1, n)`, a tensor's
    `share_memory_()`) counts too. Both hard limits: the learner's code cannot raise them."""
    import resource

    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mapped, data = (int(status[k].split()[0]) * 1024 for k in ("VmSize", "VmData"))
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    resource.setrlimit(resource.RLIMIT_AS, (limit + mapped - data, limit + mapped - data))
