"""Errors a user can fix: the entry script prints them as one line, without a traceback, and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """Bad input; the message names the key or file and what is allowed."""


class ConfigError(UserError, ValueError):
    """A config value that the schema's types allow but the study cannot use."""


class DataError(UserError):
    """A data file that is missing, corrupted, unverified or unsafe."""


class ShapeError(ValueError):
    """Tensors whose shapes would broadcast silently into a wrong result. Not a user error: no config can cause it,
    so it is a bug, and shows its traceback."""


class TrackingError(UserError):
    """A tracking store or server that cannot be reached, or a run that is not there or not ours."""


class UserCodeError(UserError):
    """An error raised in a user's own implementation: their code, so their traceback (their frames only, not the
    lab's) is the answer, after one line that says where it came from."""

    @classmethod
    def from_exception(cls, e: BaseException, label, theirs=None) -> UserCodeError:
        """`e`, as raised by the code named `label` (its file, or module); `theirs(filename)` tells the user's frames
        (by default, the file `label` itself)."""
        import traceback

        label = str(label)
        theirs = theirs or (lambda filename: filename == label)
        frames = [f for f in traceback.extract_tb(e.__traceback__) if theirs(f.filename)]
        lines = traceback.format_list(frames)
        if isinstance(e, SyntaxError) and e.filename and theirs(e.filename):  # its line is its frame
            lines = traceback.format_exception_only(e)
            return cls(f"{label}: your code does not compile:\n" + "".join(lines).rstrip())
        message = str(e)
        text = "".join(lines) + "".join(traceback.format_exception_only(e))
        return cls(f"{label}: your code raised {type(e).__name__}{': ' + message if message else ''}\n"
                   "Traceback (your frames):\n" + text.rstrip())  # fmt: skip
