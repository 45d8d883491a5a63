"""Loading the big libraries with Python's cyclic garbage collector paused.

Importing torch, matplotlib, MLflow and SQLAlchemy creates hundreds of thousands of objects that live as long as the
process, none of them garbage; with the collector on, each full collection during the imports walks all of them
again: about 0.8 s of a default run's start on a 2-core machine. The collector is off while they load, and what they
created is then frozen out of later collections (what `gc.freeze` is for), so none of it is walked again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_loaded: set[str] = set()


@contextmanager
def collector_paused(what: str) -> Iterator[None]:
    """Run the block that first loads `what` with the collector off. Only the first time in a process: freezing
    after a later block would keep an earlier job's uncollected garbage for good."""
    if what in _loaded or not gc.isenabled():
        yield
        return
    _loaded.add(what)
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
