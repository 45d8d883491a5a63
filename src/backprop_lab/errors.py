"""Errors a user can fix: the entry script prints them as one line, without a traceback, and exits non-zero."""


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
