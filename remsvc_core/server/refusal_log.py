"""Log lines for refused callers, rate-limited so a flood of them cannot flood the log.

Each refusal is worth a line with the caller's address (who is knocking is what an
operator wants to know), but anyone who can reach the port can send thousands of
bad tokens a second. So: up to ``burst`` lines at once, then one line per
``interval_s``; refusals past that are counted, and the next line logged says how
many were left out. Counts stay exact; only the lines are thinned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["RefusalLog"]


class RefusalLog:
    """``refused(method, peer, problem)`` logs a WARNING line, or counts it."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 20,
        interval_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._interval_s = interval_s
        self._clock = clock
        self._allowance = float(burst)
        self._last = clock()
        self._left_out = 0
        self.refusals = 0  # every refusal seen, logged or not
        # Interceptors may run on gRPC's threads as well as on the event loop.
        self._lock = threading.Lock()

    def refused(self, method: str, peer: str, problem: str) -> bool:
        """Log (or count) one refused call; True when a line was written."""
        with self._lock:
            self.refusals += 1
            now = self._clock()
            self._allowance = min(
                float(self._burst), self._allowance + (now - self._last) / self._interval_s
            )
            self._last = now
            if self._allowance < 1.0:
                self._left_out += 1
                return False
            self._allowance -= 1.0
            left_out, self._left_out = self._left_out, 0
        suffix = f" ({left_out} more refused calls were not logged before this one)"
        if not left_out:
            suffix = ""
        self._logger.warning("refused %s from %s: %s%s", method, peer, problem, suffix)
        return True
