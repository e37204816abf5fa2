"""Last line of defence: scrub a bearer token out of text leaving our hands.

Messages we write never include the token, but text we pass on (a gRPC status
detail, a third-party exception) is not ours; anything shown to a user or stored
goes through :func:`redact` when the token is at hand.
"""

from __future__ import annotations

from remsvc_core.settings import ChannelSettings

MASK = "***"


def redact(text: str, settings: ChannelSettings | None) -> str:
    """``text`` with the settings' bearer token (if any) replaced by ``***``."""
    if settings is None or not settings.bearer_token:
        return text
    token = settings.bearer_token.reveal()
    return text.replace(token, MASK) if token else text
