"""What a learner's process prints, relayed to the lab's stdout a line at a time: bounded, made safe, redacted.

The child's file descriptors 1 and 2 are one pipe, so `print`, `sys.stderr`, `os.write(1, ...)` and a C library's
output all come here. The first MAX_PRINTED_LINES lines pass (each cut at MAX_LINE_CHARS, terminal control
characters shown as `?`, secrets masked, each behind PREFIX so that none passes for the lab's own line), the rest
are counted (at C speed: a flood of newlines costs the lab less than it costs the child); every step is linear in
what was printed, and a pump reads at most PUMP_BYTES, so that the lab's deadlines stay its own.
"""

from __future__ import annotations

import os
import select
import sys
import time

from backprop_lab.core.redaction import redact
from backprop_lab.core.streams import safe

MAX_PRINTED_LINES = 200  # enough to debug, never a flood
MAX_LINE_CHARS = 1000
PUMP_BYTES = 1 << 20  # read at a time: a child that prints without pause cannot keep the lab from its deadline
PREFIX = "| "  # a learner's line, told from the lab's own (a printed "verdict: ..." is theirs)


class Relay:
    def __init__(self, fd: int, label: str) -> None:
        self.fd, self.label = fd, label
        os.set_blocking(fd, False)
        self.pending = bytearray()  # a line not ended yet, at most MAX_LINE_CHARS * 4 bytes of it
        self.pending_dropped = 0
        self.lines = 0  # lines printed in all
        self.unended = False  # past the bound: the last line counted has not ended yet
        self.closed = False

    def pump(self, budget: int = PUMP_BYTES) -> bool:
        """Relay what is there to read now, up to `budget` bytes; False once the pipe is at its end."""
        while not self.closed and budget > 0:
            try:
                chunk = os.read(self.fd, min(1 << 16, budget))
            except BlockingIOError:
                return True
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                break
            budget -= len(chunk)
            self._take(chunk)
        return not self.closed

    def _take(self, chunk: bytes) -> None:
        if self.lines >= MAX_PRINTED_LINES:  # past the bound: counted, at C speed
            self.lines += chunk.count(b"\n")
            self.unended = not chunk.endswith(b"\n")
            return
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
            if self.lines >= MAX_PRINTED_LINES:
                self._take(chunk[start:])
                return

    def _line(self) -> None:
        text = self.pending.decode("utf-8", "replace")
        cut = len(text) > MAX_LINE_CHARS or self.pending_dropped
        text = safe(text[:MAX_LINE_CHARS])
        if cut:
            text += " ... (cut)"
        self.pending.clear()
        self.pending_dropped = 0
        self.lines += 1
        if self.lines <= MAX_PRINTED_LINES:
            try:
                sys.stdout.write(PREFIX + redact(text) + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):  # the lab's stdout gone: the learner's prints go with it, the run goes on
                pass

    def close(self, drain_s: float = 1.0) -> None:
        """The rest, once the child is gone (for at most `drain_s`: a writer that escaped its process group could
        keep the pipe open); a line counting what was not shown."""
        leave_at = time.monotonic() + drain_s
        while self.pump() and time.monotonic() < leave_at:
            select.select([self.fd], [], [], max(0.0, leave_at - time.monotonic()))
        if self.pending or self.pending_dropped:
            self._line()
        self.lines += self.unended
        if self.lines > MAX_PRINTED_LINES:
            try:
                hidden = self.lines - MAX_PRINTED_LINES
                sys.stdout.write(f"({safe(self.label)} printed {self.lines} lines; the {hidden} after the first "
                                 f"{MAX_PRINTED_LINES} are not shown)\n")  # fmt: skip
            except (OSError, ValueError):
                pass
        os.close(self.fd)

