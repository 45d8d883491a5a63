"""A learner's code as the lab takes it, before any process starts: a file's bytes (read once, hashed, bounded,
never a link to something else) or a module's name; anything else refused in one line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from backprop_lab.core.code_files import file_path, is_file
from backprop_lab.core.errors import ConfigError
from backprop_lab.core.streams import safe

MAX_SOURCE_BYTES = 1 << 20  # a learner's file is a few KiB; a megabyte is no lesson's
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def source_of(code: str, base: Optional[Path]) -> tuple[Optional[Path], Optional[bytes]]:
    """The file `code` names and its bytes, or (None, None) for a module name; ConfigError, in one line, for what
    is neither (no .py, a link to something that is not Python, too large, not there)."""
    if safe(code) != code:
        raise ConfigError(f"impl.code: {safe(code)!r} has a control character in its name (shown as ?), which no "
                          "terminal or log should receive; rename the file")  # fmt: skip
    path = file_path(code, base)
    if not is_file(code) and not path.exists():  # a module's name (a file's, such as lib.so, is the file's)
        if not MODULE_NAME.fullmatch(code):
            raise ConfigError(f"impl.code: {code!r} is neither a .py file nor a module name (dotted identifiers)")
        return None, None
    if path.suffix != ".py":
        raise ConfigError(f"impl.code: {code} is not a .py file; give your Python file (my_backward.py) or a module")
    if not path.is_file():
        raise ConfigError(f"impl.code: no file {str(path)!r}; write the lesson's lin_grad, relu_grad and mse_grad "
                          "(or Lin, Relu, Mse, or a Net) in it")  # fmt: skip
    target = path.resolve()
    if target.suffix != ".py":
        raise ConfigError(f"impl.code: {code} links to {target.name}, which is not a .py file; refused, not read")
    size = target.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise ConfigError(f"impl.code: {code} is {size:,} bytes; a submission is at most {MAX_SOURCE_BYTES:,}")
    return path, target.read_bytes()[:MAX_SOURCE_BYTES]
