"""The process's standard output, which a user may point anywhere: a terminal, a pipe that closes, a full device,
an ASCII-only locale. What the project prints must never be what fails a run that has been logged whole."""

from __future__ import annotations

import contextlib
import os
import re
import sys

# what no terminal may receive from text the project did not write (a learner's print, a file's name): C0 and C1
# controls but tab and newline, and the bidirectional overrides that reorder what a line seems to say
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe(text: str) -> str:
    """`text` as a terminal may show it: each control character a `?`."""
    return CONTROL.sub("?", text)


def tolerate_any_encoding() -> None:
    """A character stdout's encoding cannot hold (`×`, `·` under PYTHONIOENCODING=ascii) is written escaped, as
    Python already does on stderr, instead of raising UnicodeEncodeError in the middle of a summary."""
    stream = getattr(sys.stdout, "_stream", sys.stdout)  # under redaction's wrapper
    with contextlib.suppress(AttributeError, ValueError, OSError):
        stream.reconfigure(errors="backslashreplace")


def give_up(fd: int = 1) -> None:
    """After a write to a standard stream failed (no space left, a reader gone): point it at /dev/null, so that
    what is still buffered does not fail again when Python flushes it on exit (exit status 120 and a traceback)."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
