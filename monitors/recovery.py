"""After the load: does the gateway answer again, and how soon?

`probe_recovery(url)` asks a cheap path (the reference gateway's `/health`, or the target
profile's `health` request) every quarter of a second, each with a 1 s timeout, until one
answers 2xx or `timeout_s` passes. The report reads the result as the gateway's recovery.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import httpx

ATTEMPT_TIMEOUT_S = 1.0
PAUSE_S = 0.25


def probe_recovery(url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    started = time.monotonic()
    attempts, last = 0, ""
    with httpx.Client(timeout=ATTEMPT_TIMEOUT_S) as client:
        while True:
            attempts += 1
            try:
                response = client.get(url)
                if 200 <= response.status_code < 300:
                    return {
                        "url": url,
                        "recovered": True,
                        "after_s": round(time.monotonic() - started, 3),
                        "attempts": attempts,
                    }
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if time.monotonic() - started + PAUSE_S > timeout_s:
                return {
                    "url": url,
                    "recovered": False,
                    "waited_s": round(time.monotonic() - started, 3),
                    "attempts": attempts,
                    "last": last,
                }
            gevent.sleep(PAUSE_S)
