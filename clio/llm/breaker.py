"""The circuit breaker of the ``openai`` transport: it opens when at least ``threshold`` of the
last ``window`` attempts failed for transport reasons (connection refused or reset, timeouts,
HTTP 5xx; not 429 or other answers), and stays open. While a batch runs, :attr:`tripped` is an
event set when it opens, so waits and calls in flight end at once.

    >>> b = Breaker("http://127.0.0.1:9/v1", window=2, threshold=1.0)
    >>> b.record("timeout"); b.outage is None
    True
    >>> b.record("timeout"); b.outage
    'LLM server http://127.0.0.1:9/v1 is failing: 2 of the last 2 calls failed (timeout: 2)'
"""

from __future__ import annotations

import asyncio
import collections
import contextlib


class Breaker:
    """Open (``outage`` set) once too many recent attempts failed; ``window = 0`` never opens."""

    def __init__(self, server: str, window: int = 16, threshold: float = 0.75) -> None:
        self.server = server
        self.window = max(0, int(window))
        self.threshold = threshold
        # True for each recent attempt that failed for a transport reason
        self._recent: collections.deque[bool] = collections.deque(maxlen=max(1, self.window))
        self._errors: collections.Counter[str] = collections.Counter()
        self.outage: str | None = None  # why it opened (None while it is closed)
        self.tripped: asyncio.Event | None = None

    def record(self, transport_error: str | None) -> None:
        """One attempt's outcome (``transport_error``: its reason, None when it was answered)."""
        if self.window == 0 or self.outage is not None:
            return
        self._recent.append(transport_error is not None)
        if transport_error is not None:
            self._errors[transport_error] += 1
        failed = sum(self._recent)
        if len(self._recent) >= self.window and failed >= self.threshold * self.window:
            reasons = ", ".join(f"{k}: {v}" for k, v in self._errors.most_common(3))
            self.outage = (
                f"LLM server {self.server} is failing: {failed} of the last {len(self._recent)} "
                f"calls failed ({reasons})"
            )
            if self.tripped is not None:
                self.tripped.set()

    async def pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the breaker opens meanwhile."""
        tripped = self.tripped
        if tripped is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tripped.wait(), timeout=delay)
