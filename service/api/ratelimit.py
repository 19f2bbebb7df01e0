"""Per-token rate limits on writes and on run creation: token buckets, one per caller and process.

A caller over its rate gets 429 with `Retry-After`, which the client library honours. The
buckets live in each server process, so N processes allow N times the rate: the limit is there
to stop one runaway job or script from crowding out the others, not to bill anyone.
"""

from __future__ import annotations

import math
import threading
import time

from ..core.problems import Problem

MAX_CALLERS = 10_000
"""Buckets kept; beyond, the oldest goes (it comes back full, which only errs on the lenient side)."""


class TooManyRequests(Problem):
    status, title, kind = 429, "Too many requests", "rate-limited"


class RateLimit:
    """`rate` actions a second for each caller, with bursts of up to `burst`; rate 0 means none."""

    def __init__(self, what: str, rate: float, burst: int, setting: str) -> None:
        self.what = what
        self.rate = rate
        self.burst = float(burst)
        self.setting = setting
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens left, when)
        self._lock = threading.Lock()

    def take(self, caller: str) -> None:
        """Spend one action of `caller`'s, or raise TooManyRequests saying when to retry."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.pop(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[caller] = (tokens - 1, now)
                while len(self._buckets) > MAX_CALLERS:
                    del self._buckets[next(iter(self._buckets))]
                return
            self._buckets[caller] = (tokens, now)
        wait = math.ceil((1 - tokens) / self.rate)
        raise TooManyRequests(
            f"{caller!r} is over its limit of {self.what} ({self.setting}); retry in {wait} s",
            extra={"retry_after": wait},
            headers={"retry-after": str(wait)},
        )
