"""What a run ran on and from: versions, machine, threads, BLAS, GPU, and the code's git state."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("torch", "numpy", "mlflow", "hydra-core", "omegaconf")


def resolve_device(name: str) -> torch.device:
    from backprop_lab.core.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch.cuda.is_available() is False here; use auto or cpu")
    return torch.device(name)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _found(pattern: str, text: str, label: str) -> str | None:
    m = re.search(pattern, text)
    return f"{label} {m[1]}" if m else None


def libraries(config: str) -> dict[str, str]:
    """The BLAS and oneDNN builds named in torch.__config__.show(), whose wording differs between MKL and OpenBLAS
    builds."""
    blas = (_found(r"Math Kernel Library Version ([\d.]+)", config, "MKL")
            or _found(r"OpenBLAS[^\d\n]*([\d.]+)", config, "OpenBLAS")
            or ("OpenBLAS" if "BLAS_INFO=open" in config else None)  # its version is not in the build's summary
            or _found(r"BLAS_INFO=(\w+)", config, "BLAS"))  # fmt: skip
    onednn = _found(r"(?:MKL-DNN|oneDNN) v?([\d.]+)", config, "oneDNN")
    return {"blas": blas or "unknown", "onednn": onednn or "none"}


def machine() -> dict[str, str]:
    """What a timing depends on, in a line's worth: the CPU, the vector ISA torch dispatches to (AVX512, AVX2, ...),
    and the BLAS and oneDNN builds in torch."""
    isa = torch.backends.cpu.get_cpu_capability()
    return {"cpu": cpu_model(), "isa": isa} | libraries(torch.__config__.show())


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_info(device: torch.device) -> dict:
    info = {
        "versions": versions(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "blas": torch.__config__.show(),
        "parallel": torch.__config__.parallel_info(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {"gpu_name": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 2)}
    return info


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def git_state(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """The commit of the code that ran, and whether its tracked files had uncommitted changes ("unknown" outside
    git)."""
    try:
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no").strip())
        return {"git.commit": _git(root, "rev-parse", "HEAD").strip(), "git.dirty": str(dirty).lower()}
    except (OSError, subprocess.CalledProcessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}


def git_diff(root: Path = PROJECT_ROOT) -> str:
    """The uncommitted changes to tracked files, which a rerun from the commit alone would not have."""
    try:
        return _git(root, "diff", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return ""


@dataclass
class GitDiff:
    tags: dict[str, str]  # git.diff_sha256, git.diff_bytes, and git.diff: where the patch is, or why it is not
    patch: Optional[str]  # the uncommitted changes, to log as GIT_DIFF_ARTIFACT; None when only hashed


GIT_DIFF_ARTIFACT = "git/diff.patch"


def git_diff_record(mode: str, max_bytes: int) -> GitDiff:
    """The uncommitted changes, described by tags, with the patch itself when `mode` is "patch" and it is not over
    `max_bytes` (tracking.git_diff and tracking.git_diff_max_bytes)."""
    diff = git_diff().encode()
    tags = {"git.diff_sha256": hashlib.sha256(diff).hexdigest(), "git.diff_bytes": str(len(diff))}
    if mode == "patch" and len(diff) <= max_bytes:
        return GitDiff(tags | {"git.diff": f"logged as {GIT_DIFF_ARTIFACT}"}, diff.decode(errors="replace"))
    why = "tracking.git_diff=hash" if mode == "hash" else "over tracking.git_diff_max_bytes"
    return GitDiff(tags | {"git.diff": f"hash only ({why})"}, None)


def reproducibility_tags(threads: int) -> dict[str, str]:
    """What a rerun must match, or explain, to give the same numbers (the seed is a param)."""
    tags = {f"version.{name}": v for name, v in versions().items()}
    tags |= {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "torch.deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()).lower(),
        "torch.threads": str(threads),
    }
    return tags
