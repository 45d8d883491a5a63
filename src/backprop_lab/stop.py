"""A stop asked for by a signal, kept where long loops can see it.

The entry script's handler raises KeyboardInterrupt, but Python drops an exception raised inside a weakref callback
or a `__del__` (it prints "Exception ignored in ..." and goes on), and a signal can land there. The timing loop,
the one stage that runs for long, checks this flag between blocks, so a lost interrupt still ends the run.
"""

from __future__ import annotations

import threading

requested = threading.Event()


def check() -> None:
    if requested.is_set():
        raise KeyboardInterrupt
