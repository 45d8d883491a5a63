"""Errors a user can fix, and the one way every command says one: `error_line` (the line), USER_ERROR_EXIT (the
status); `Refused` carries them past Hydra's job wrapper, which a SystemExit passes untouched."""

from __future__ import annotations

from dataclasses import fields, is_dataclass

USER_ERROR_EXIT = 1


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


def one_line(e: BaseException) -> str:
    """Any error as one line, secrets masked: OmegaConf's and Hydra's multi-line messages cut to the key and what it
    allows; anything else, its first two lines (a lab's own error is one already)."""
    from backprop_lab.core.redaction import redact

    return redact(_described(e))


def _described(e: BaseException) -> str:
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    if isinstance(e, MissingConfigException) and e.options and e.missing_cfg_file:
        group, _, option = e.missing_cfg_file.rpartition("/")
        return f"{group}: no option {option!r}; choose one of {', '.join(sorted(e.options))}"
    if isinstance(e, OverrideParseException):
        reason = e.message.strip().splitlines()[0].split(";")[0]  # not Hydra's link to its grammar
        quote = "quote a value that holds []{}(),:= or spaces"
        return f"{e.override}: not an override Hydra can parse ({reason}); {quote}"
    if isinstance(e.__cause__, OmegaConfBaseException):
        e = e.__cause__  # "Error merging override ..." wraps the error that names the key
    if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
        if isinstance(e, (ConfigAttributeError, ConfigKeyError)) and is_dataclass(e.object_type):
            allowed = ", ".join(f.name for f in fields(e.object_type))
            return f"{e.full_key}: unknown key; {e.object_type.__name__} allows {allowed}"
        return f"{e.full_key}: {str(e.msg).splitlines()[0]}"
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return "; ".join(lines[:2]) or type(e).__name__


def error_line(e: BaseException | str) -> str:
    """What every command prints for bad input: `error: ` and the lab's one line. A learner's error (UserCodeError)
    is theirs whole: the line that says where it came from, then their traceback."""
    return f"error: {e if isinstance(e, (str, UserError)) else one_line(e)}"


class Refused(SystemExit):
    """Bad input on its way out of a Hydra job or callback: its error line on stderr, USER_ERROR_EXIT."""

    def __init__(self, e: BaseException | str) -> None:
        super().__init__(error_line(e))
