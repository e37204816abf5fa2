"""Bounded waits for the server tests."""

from __future__ import annotations

import threading
from collections.abc import Callable


def wait_for_text(read: Callable[[], str], *texts: str, timeout: float = 10.0) -> str:
    """What ``read()`` returns once it contains every one of ``texts`` (or at the timeout).

    The server writes its log lines from a background thread, so a line can land a
    moment after the response that the command produced.
    """
    text = read()
    for _ in range(int(timeout / 0.02)):
        if all(t in text for t in texts):
            break
        threading.Event().wait(0.02)
        text = read()
    return text
