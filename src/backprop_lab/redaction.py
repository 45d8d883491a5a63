"""Credentials never leave the process in clear: every text the project prints, logs or writes goes through `redact`.

Three nets, because a secret reaches text by more than one road:
- a pattern for URIs with credentials, `scheme://user:secret@` and `scheme://token@`, also as Hydra escapes them in a
  sweep (`http\\://alice\\:secret@`) and as Python's repr doubles those backslashes;
- the secrets themselves, learnt from every URI seen and from the environment (`*PASSWORD`, `*TOKEN`, `*SECRET`,
  `*_KEY`), replaced wherever they appear, so that a password printed outside its URI is caught too;
- the process's stdout and stderr, and its logging handlers, wrapped so that text written by MLflow, Hydra or a
  traceback passes through the first two nets (`protect_process`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

MASK = "***"
_MIN_SECRET = 4  # shorter values are too likely to be ordinary words to be replaced wherever they appear

# a scheme, then `://` (its colon maybe backslash-escaped), then userinfo up to `@`
_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*\\*://)(?P<user>[^/@\s:\\'\"]+)(?:(?P<sep>\\*:)(?P<secret>[^/@\s'\"]*))?@"
)
_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|secret|access_token|api_key)=)[^&\s'\"]*")
_SECRET_ENV = re.compile(r"(?i)(PASSWORD|PASSWD|TOKEN|SECRET|_KEY)$")

_known: set[str] = set()


def _unescape(text: str) -> str:
    return re.sub(r"\\+(.)", r"\1", text)


def learn(secret: str) -> None:
    """Remember a secret, as written and as Hydra escapes it, to replace it wherever it appears."""
    secret = _unescape(secret)
    if len(secret) >= _MIN_SECRET:
        _known.add(secret)
        _known.add(re.sub(r"([\\()\[\]{}:=, ])", r"\\\1", secret))  # Hydra's escape_special_characters


def learn_environment(environ: dict[str, str] | None = None) -> None:
    """Secrets the process was handed in its environment, and credentials in any URI there."""
    for name, value in (os.environ if environ is None else environ).items():
        if _SECRET_ENV.search(name):
            learn(value)
        redact(value)  # learns the secret of a URI such as MLFLOW_TRACKING_URI's


def redact(text: Any) -> Any:
    """`text` with credentials replaced by ***; anything that is not a string is returned as it is."""
    if not isinstance(text, str):
        return text

    def userinfo(m: re.Match) -> str:
        if m.group("secret") is None:
            if m.group("scheme").lower().startswith("http"):  # a token; a database URI's lone user name is not secret
                learn(m.group("user"))
            return f"{m.group('scheme')}{MASK}@"
        learn(m.group("secret"))
        return f"{m.group('scheme')}{m.group('user')}{m.group('sep')}{MASK}@"

    text = _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, _CREDENTIALS.sub(userinfo, text))
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingStream:
    """A text stream that redacts what is written to it, and is otherwise the stream it wraps (isatty, fileno,
    encoding, ... are the wrapped stream's: not a TextIOBase subclass, whose defaults would hide them)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):  # fileno, isatty, encoding, buffer, ...
        return getattr(self._stream, name)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


def protect_logging() -> None:
    """Every handler of the root logger (and of Hydra's) redacts: Hydra's job log file is written by one."""
    for logger in (logging.getLogger(), logging.getLogger("hydra")):
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


def protect_process(argv: list[str] | None = None) -> None:
    """For an entry point: learn the secrets of the command line and environment, and redact stdout and stderr."""
    learn_environment()
    for arg in sys.argv if argv is None else argv:
        redact(arg)
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
    protect_logging()
