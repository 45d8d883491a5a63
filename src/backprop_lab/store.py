"""What a tracking store must be before any run starts (placeholder: the http check; the full checks follow)."""

from __future__ import annotations

import os
import time
from typing import Optional

from backprop_lab.errors import TrackingError
from backprop_lab.redaction import redact


def check_store(uri: str, wait_s: Optional[float] = None) -> None:
    check_reachable(uri, wait_s)


def check_reachable(uri: str, wait_s: Optional[float] = None) -> None:
    """Fail within `wait_s` (default 20, or $BACKPROP_LAB_SERVER_WAIT_S), before any work, when a tracking server
    does not answer; a server that is restarting (between the jobs of a sweep, say) gets that long to come back."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    if wait_s is None:
        wait_s = float(os.environ.get("BACKPROP_LAB_SERVER_WAIT_S", "20"))
    deadline = time.monotonic() + wait_s
    while True:
        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=3).raise_for_status()
            return
        except requests.RequestException as e:
            if time.monotonic() + 1 > deadline:
                reason = type(e).__name__
                raise TrackingError(
                    f"tracking server {redact(uri)} does not answer ({reason}, {wait_s:g} s); start it or fix the URI"
                ) from None
            time.sleep(1)


