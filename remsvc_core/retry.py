"""How often the engine tries to reach a server before the first command is written.

Retrying is only ever safe while nothing was handed to the transport: once a command
may have reached the server, sending the batch again could run it twice (see
:class:`remsvc_core.engine.Phase` for the one exception, re-attaching a kept batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from remsvc_core.errors import SettingsError

__all__ = ["NO_RETRY", "RETRYABLE_CODES", "RetryPolicy"]

#: gRPC codes that mean "try again later": retried, but only before the first write.
RETRYABLE_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try reaching the server before the first command is written.

    ``attempts`` counts the first try. Between tries the engine waits
    ``initial_backoff_s``, then multiplies by ``multiplier`` up to ``max_backoff_s``.
    Retries never go past the stream's timeout, and never happen once a command has
    been written: a command must not run twice.
    """

    attempts: int = 4
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or self.attempts < 1
        ):
            raise SettingsError(f"RetryPolicy.attempts must be an int >= 1, got {self.attempts!r}")
        for name in ("initial_backoff_s", "max_backoff_s"):
            value = getattr(self, name)
            if not _finite_number(value) or value < 0:
                raise SettingsError(f"RetryPolicy.{name} must be a number >= 0, got {value!r}")
        if not _finite_number(self.multiplier) or self.multiplier < 1:
            raise SettingsError(f"RetryPolicy.multiplier must be >= 1, got {self.multiplier!r}")

    def backoff_s(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        delay: float = self.initial_backoff_s * self.multiplier ** (retry_number - 1)
        return min(self.max_backoff_s, delay)


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


NO_RETRY = RetryPolicy(attempts=1)
