"""A user's code file as runs record it: where `impl.code` points, its SHA-256, and the tag that holds it. Shared by
the pipeline that logs it, and the rerun and resume that check it; nothing here imports torch."""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path
from typing import Optional

# where Python's own library and installed packages are: code there is neither the lab's nor a learner's own
_LIBRARIES = [sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")]
INSTALLED = tuple({p for lib in _LIBRARIES for p in (lib, str(Path(lib).resolve()))})


def is_file(code: str) -> bool:
    """`impl.code` names a file (my_backward.py, dir/x), not an importable module (pkg.backward)."""
    return code.endswith(".py") or "/" in code


def file_path(code: str, base: Optional[Path]) -> Path:
    """Where a file `impl.code` names is: relative to the launch directory `base`, unless absolute."""
    return Path(code) if base is None or Path(code).is_absolute() else base / code


def file_sha256(path: Path) -> Optional[str]:
    """The file's SHA-256, as its run is tagged; None when there is no file there."""
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
