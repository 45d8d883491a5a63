"""What a learner's process prints, relayed to the lab's stdout a line at a time: bounded, made safe, redacted.

The child's file descriptors 1 and 2 are one pipe, so `print`, `sys.stderr`, `os.write(1, ...)` and a C library's
output all come here. The first MAX_PRINTED_LINES lines pass (each cut at MAX_LINE_CHARS, terminal control
characters shown as `?`, secrets masked), the rest are counted; every step is linear in what was printed.
"""

from __future__ import annotations

import os
import re
import sys

from backprop_lab.redaction import redact

MAX_PRINTED_LINES = 200  # enough to debug, never a flood
MAX_LINE_CHARS = 1000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")  # all but tab and newline: no escape sequence reaches a terminal


class Relay:
    def __init__(self, fd: int, label: str) -> None:
        self.fd, self.label = fd, label
        os.set_blocking(fd, False)
        self.pending = bytearray()  # a line not ended yet, at most MAX_LINE_CHARS * 4 bytes of it
        self.pending_dropped = 0
        self.lines = 0  # lines printed in all
        self.closed = False

    def pump(self) -> bool:
        """Relay what is there to read now; False once the pipe is at its end (every writer gone)."""
        while not self.closed:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return True
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                break
            self._take(chunk)
        return False

    def _take(self, chunk: bytes) -> None:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            room = MAX_LINE_CHARS * 4 - len(self.pending)
            self.pending += piece[:room]
            self.pending_dropped += max(0, len(piece) - room)
            if end < 0:
                return
            self._line()
            start = end + 1

    def _line(self) -> None:
        text = self.pending.decode("utf-8", "replace")
        cut = len(text) > MAX_LINE_CHARS or self.pending_dropped
        text = _CONTROL.sub("?", text[:MAX_LINE_CHARS])
        if cut:
            text += " ... (cut)"
        self.pending.clear()
        self.pending_dropped = 0
        self.lines += 1
        if self.lines <= MAX_PRINTED_LINES:
            try:
                sys.stdout.write(redact(text) + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):  # the lab's stdout gone: the learner's prints go with it, the run goes on
                pass

    def close(self) -> None:
        """The rest, once the child is gone; a line counting what was not shown."""
        self.pump()
        if self.pending or self.pending_dropped:
            self._line()
        if self.lines > MAX_PRINTED_LINES:
            try:
                hidden = self.lines - MAX_PRINTED_LINES
                sys.stdout.write(f"({self.label} printed {self.lines} lines; the {hidden} after the first "
                                 f"{MAX_PRINTED_LINES} are not shown)\n")  # fmt: skip
            except (OSError, ValueError):
                pass
        os.close(self.fd)
