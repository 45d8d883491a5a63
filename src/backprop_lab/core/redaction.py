"""Credentials never leave the process in clear: every text the project prints, logs or writes goes through `redact`.

Three nets, because a secret reaches text by more than one road:
- the secrets themselves, learnt exactly from the command line and the environment (a URI's password, `*PASSWORD`,
  `*TOKEN`, `*SECRET`, `*_KEY`) and from every URI seen since, masked wherever they appear in any spelling a text
  here gives them: percent-encoded or decoded, escaped as Hydra escapes a sweep's override, quoted (once or twice
  over) by YAML, JSON, a repr, Hydra's grammar or a shell, and cut in two by YAML's folding of a long line;
- a pattern for URIs with credentials, `scheme://user:secret@` and `scheme://token@`, read as urllib.parse reads them
  (the userinfo ends at the last `@` before `/`, `?` or `#`), also as Hydra escapes them (`http\\://alice\\:secret@`)
  and as repr doubles those backslashes. In running text a space also ends a URI: a password holding one is hidden
  by the first net, which learns it from the command line;
- the process's stdout and stderr, and its logging handlers, wrapped so that text written by MLflow, Hydra or a
  traceback passes through the first two nets (`protect_process`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterable
from typing import Any, Optional
from urllib.parse import quote, unquote

MASK = "***"
_MIN_SECRET = 4  # shorter values are too likely to be ordinary words to be replaced wherever they appear

_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*\\*://"  # its colon maybe backslash-escaped, once by Hydra, twice in a repr
# in running text a URI also ends at white space; an escaped character (`\ `, `\,`, `\\`) is part of it
# a scheme starts where no scheme character precedes it: tried at every letter of a long word, `[A-Za-z0-9+.-]*`
# would scan the rest of the word each time (quadratic: 40 KB of letters took 17 s); from the word's start alone, linear
_CREDENTIALS = re.compile(rf"(?<![A-Za-z0-9+.-])(?P<scheme>{_SCHEME})(?P<userinfo>(?:\\.|[^/?#\s\\])*)@")
_AUTHORITY = re.compile(rf"{_SCHEME}(?P<authority>[^/?#]*)", re.DOTALL)  # a whole value: white space is its own
_USER_SEP = re.compile(r"(?P<user>[^:]*?)(?P<sep>\\*:)(?P<secret>.*)", re.DOTALL)
_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|secret|access_token|api_key)=)([^&\s'\"]*)")
_FOLD = re.compile(r"\\\n[ \t]*(?:\\(?= ))?|(?P<space>\n[ \t]*)")  # YAML's folding: escaped in double quotes
_SECRET_ENV = re.compile(r"(?i)(PASSWORD|PASSWD|TOKEN|SECRET|_KEY)$")
_HYDRA_SPECIAL = re.compile(r"([\\()\[\]{}:=, \t])")  # hydra._internal.grammar.utils._ESC
_URL_SAFE = ("", "/", "!#$%&'()*+,/:;=?@[]~")  # quote's defaults, nothing kept, and the set requests leaves as is

_known: set[str] = set()


def _unescaped(seen: str) -> set[str]:
    """What a text may hold: as seen, with a shell's or a YAML single-quoted string's quoting of `'` undone, and one
    or two levels of backslash escapes (Hydra's, then a repr's or JSON's) undone."""
    readings = {seen, seen.replace("'\"'\"'", "'"), seen.replace("''", "'")}
    for _ in range(2):
        readings |= {re.sub(r"\\(.)", r"\1", r, flags=re.DOTALL) for r in readings}
    return readings


_QUOTINGS = (  # how a string is written inside another; nested twice at most (a Hydra override in JSON or a repr)
    lambda s: s.replace("'", "''"),  # YAML single-quoted
    lambda s: s.replace("\\", "\\\\").replace('"', '\\"'),  # JSON, YAML double-quoted, repr in double quotes
    lambda s: s.replace("\\", "\\\\").replace("'", "\\'"),  # repr in single quotes
    lambda s: s.replace("\\", "\\\\"),  # repr
    lambda s: s.replace("'", "\\'"),  # Hydra's single-quoted string
    lambda s: s.replace('"', '\\"'),  # Hydra's double-quoted string
    lambda s: s.replace("'", "'\"'\"'"),  # shlex.quote: a shell's single quotes (the command line MLflow records)
)


def spellings(secret: str) -> set[str]:
    """Every way `secret` can be written in a text here: percent-encoded or not, escaped as Hydra escapes an
    override's value, and quoted (once or twice over) as YAML, JSON, a repr, Hydra or a shell quote a string."""
    encoded = {secret} | {quote(secret, safe=safe) for safe in _URL_SAFE}
    spelt = encoded | {_HYDRA_SPECIAL.sub(r"\\\1", s) for s in encoded}
    for _ in range(2):
        spelt |= {quoting(s) for s in spelt for quoting in _QUOTINGS}
    return spelt


def learn(seen: str) -> None:
    """Remember a secret, however it was seen, to replace it in any of its spellings wherever it appears."""
    for secret in (r for u in _unescaped(seen) for r in (u, unquote(u))):
        if len(secret) >= _MIN_SECRET and MASK not in secret and secret not in _known:  # known: its spellings too
            _known.update(s for s in spellings(secret) if len(s) >= _MIN_SECRET)


def _secret_of(userinfo: str, scheme: str) -> Optional[str]:
    """A URI's secret to learn, as urllib.parse reads it: what follows the userinfo's first `:`; without one, for
    HTTP, the userinfo is a token (a database URI's lone user name, masked in its URI, is too common a word)."""
    m = _USER_SEP.fullmatch(userinfo)
    if m:
        return m.group("secret")
    return userinfo if "http" in scheme.lower() else None


def _uri_secret(value: str) -> Optional[str]:
    m = _AUTHORITY.match(value)
    userinfo, at, _ = m.group("authority").rpartition("@") if m else ("", "", "")
    return _secret_of(userinfo, value[: m.start("authority")]) if at else None


def learn_argument(argument: str) -> None:
    """Learn the secret of a URI given as a value: a command-line argument, an override `key=value` (its value
    maybe in Hydra's quotes or escapes), `--option=value`, or an environment variable's value."""
    values = {argument, argument.partition("=")[2]}
    for value in list(values):
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":  # Hydra's quoted string
            values |= {value[1:-1], re.sub(rf"\\(\\*{value[0]})", r"\1", value[1:-1])}
    for value in values:
        for reading in _unescaped(value.strip()):
            secret = _uri_secret(reading)
            if secret:
                learn(secret)


def learn_arguments(arguments: Iterable[str]) -> None:
    for argument in arguments:
        learn_argument(argument)


def is_secret_name(name: str) -> bool:
    """An environment variable's name that says its value is a secret (`*PASSWORD`, `*TOKEN`, `*SECRET`, `*_KEY`)."""
    return bool(_SECRET_ENV.search(name))


def learn_environment(environ: dict[str, str] | None = None) -> None:
    """Secrets the process was handed in its environment, and credentials in any URI there."""
    for name, value in (os.environ if environ is None else environ).items():
        if is_secret_name(name):
            learn(value)
        learn_argument(value)  # such as MLFLOW_TRACKING_URI's


def _unfolded(text: str) -> tuple[str, list[int]]:
    """`text` with YAML's line folding undone, and where each of its characters came from in `text`. YAML breaks a
    long string's line at a space (a line break and an indentation instead), and a double-quoted string's anywhere
    (an escaped line break): a secret in Hydra's saved files can be cut in two."""
    view, origin, last = [], [], 0
    for m in _FOLD.finditer(text):
        view.append(text[last : m.start()])
        origin.extend(range(last, m.start()))
        if m.group("space"):
            view.append(" ")
            origin.append(m.start())
        last = m.end()
    view.append(text[last:])
    origin.extend(range(last, len(text) + 1))
    return "".join(view), origin


def redact(text: Any) -> Any:
    """`text` with credentials replaced by ***; anything that is not a string is returned as it is."""
    if not isinstance(text, str):
        return text
    view, origin = _unfolded(text) if "\n" in text else (text, None)
    spans = []  # of `view`, to mask
    for m in _CREDENTIALS.finditer(view):
        scheme, info = m.group("scheme"), m.group("userinfo")
        secret = _secret_of(info, scheme)
        if secret is not None:
            learn(secret)
        user = _USER_SEP.fullmatch(info)
        spans.append((m.start("userinfo") + user.start("secret"), m.end("userinfo")) if user else m.span("userinfo"))
    spans += [m.span(2) for m in _SECRET_QUERY.finditer(view)]
    for secret in _known:  # after the pattern, which may have learnt one here; a known secret also where the
        at = view.find(secret)  # pattern cuts it short (a space) or sees no URI
        while at >= 0:
            spans.append((at, at + len(secret)))
            at = view.find(secret, at + 1)
    if origin is not None:
        spans = [(origin[start], origin[end - 1] + 1) for start, end in spans if end > start]
    merged: list[list[int]] = []
    for start, end in sorted(span for span in spans if span[1] > span[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    shown, last = [], 0
    for start, end in merged:
        shown += [text[last:start], MASK]
        last = end
    return "".join(shown) + text[last:]


def _hold_closed_descriptors() -> None:
    """A process started with stdin, stdout or stderr closed (`>&-`): Python sets that stream to None, and the next
    file opened would take the free number, to get what a child process or a C library writes to it. Each closed
    one is held open on the null device instead."""
    for fd, flags in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, flags)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


class RedactingStream:
    """A text stream that redacts what is written to it, and is otherwise the stream it wraps (isatty, fileno,
    encoding, ... are the wrapped stream's: not a TextIOBase subclass, whose defaults would hide them)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            self._stream.write(redact(text))
        except BrokenPipeError:  # its reader went away (`| head`): the rest goes nowhere, the run goes on
            self._reader_gone()
        return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        from backprop_lab.core import streams

        with contextlib.suppress(OSError, ValueError):
            streams.give_up(self._stream.fileno())

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
    """For an entry point: learn the secrets of the command line and environment, and redact stdout and stderr
    (the null device's, where the process was started with one closed)."""
    learn_environment()
    learn_arguments(sys.argv if argv is None else argv)
    _hold_closed_descriptors()
    if sys.stdin is None:
        sys.stdin = open(os.devnull)
    if not isinstance(sys.stdout, RedactingStream):  # a closed one costs its output, not the run
        sys.stdout = RedactingStream(open(os.devnull, "w") if sys.stdout is None else sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(open(os.devnull, "w") if sys.stderr is None else sys.stderr)
    protect_logging()
