"""A teacher's folder of submissions, swept: `-m impl=user impl.code=submissions/` (or a pattern,
`'impl.code=submissions/*.py'`) is the sorted list of the folder's .py files, one job each, written into the command
line before Hydra parses it, each quoted for Hydra's grammar (a name may hold spaces, commas, `=`, quotes or `${`).

Hydra sweeps a list (`impl.code=a.py,b.py`) but knows no folder; expanding here keeps everything after it (job
names, resume, the report) the same as for a list typed by hand.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Optional

from backprop_lab.core.errors import UserError
from backprop_lab.core.streams import safe

_CODE = re.compile(r"^(\+{0,2}impl\.code=)(.*)$", re.DOTALL)
MULTIRUN_FLAGS = ("-m", "--multirun")
PATTERN_CHARS = "*?["

# the folder or pattern the last expanded command named, as typed: the sweep's parent is named by it
given: Optional[str] = None


def hydra_quoted(value: str) -> str:
    """`value` as a quoted string of Hydra's override grammar: it parses back to `value` whatever it holds. Hydra's
    own escape_special_characters leaves quotes and `${` as they are, which then fail to parse or interpolate."""
    value = re.sub(r"(\\+)('|$)", lambda m: m.group(1) * 2 + m.group(2), value)  # a backslash before a quote or the end
    return "'" + value.replace("'", "\\'").replace("${", "\\${") + "'"


def files(value: str, cwd: Path) -> Optional[list[str]]:
    """The .py files a folder or a pattern names, sorted, spelled as the user spelled the folder (relative to `cwd`,
    the launch directory, as impl.code is); None when `value` names neither."""
    path = Path(value) if Path(value).is_absolute() else cwd / value
    if path.is_dir():
        prefix = value if value.endswith("/") else value + "/"
        return sorted(prefix + p.name for p in path.iterdir() if _submission(p))
    if any(c in value for c in PATTERN_CHARS) and not path.is_file():
        matched = glob.glob(value, root_dir=None if Path(value).is_absolute() else cwd)
        return sorted(m for m in matched if _submission(path if Path(m).is_absolute() else cwd / m))
    return None


def _submission(path: Path) -> bool:
    return path.suffix == ".py" and path.is_file() and not path.name.startswith(".")


def expand(argv: list[str], cwd: Path) -> list[str]:
    """The command line with a folder (or pattern) given to impl.code replaced by its files, in a multirun; in a
    single run a folder is one line. UserError when the folder holds no .py file."""
    global given
    given = None
    multirun = any(a in MULTIRUN_FLAGS for a in argv)
    out = []
    for arg in argv:
        match = _CODE.match(arg)
        found = files(match.group(2), cwd) if match and match.group(2) else None
        if found is None:
            out.append(arg)
            continue
        value = match.group(2)
        folder = (cwd / value).is_dir()
        if not multirun:
            raise UserError(f"impl.code: {value} is {'a folder' if folder else 'a pattern'}; sweep its files with -m")
        if not found:
            raise UserError(f"impl.code: {value} {'holds' if folder else 'matches'} no .py file; a folder to sweep "
                            "holds the submissions, one .py file each")  # fmt: skip
        unsafe = [f for f in found if safe(f) != f]
        if unsafe:  # refused, not skipped: a submission left out without a word would go ungraded
            raise UserError(f"impl.code: {safe(unsafe[0])!r} has a control character in its name (shown as ?), "
                            "which no terminal or log should receive; rename the file and sweep again")  # fmt: skip
        given = arg
        out.append(match.group(1) + ",".join(hydra_quoted(f) for f in found))
    return out
