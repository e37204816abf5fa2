"""Last line of defence: scrub a bearer token out of text leaving our hands.

Messages we write never include the token, but text we pass on (a gRPC status
detail, a third-party exception) is not ours; anything shown to a user or stored
goes through :func:`redact` when the token is at hand.
"""

from __future__ import annotations

from remsvc_core.results import StreamOutcome
from remsvc_core.settings import ChannelSettings

MASK = "***"


def redact(text: str, settings: ChannelSettings | None) -> str:
    """``text`` with the settings' bearer token (if any) replaced by ``***``."""
    if settings is None or not settings.bearer_token:
        return text
    token = settings.bearer_token.reveal()
    return text.replace(token, MASK) if token else text


def scrub_outcome(outcome: StreamOutcome, settings: ChannelSettings) -> StreamOutcome:
    """Scrub the texts of an outcome that come from the server or the transport.

    Status details and plugin errors are not written by us; they are scrubbed before
    they can reach an exception message, a log line, a trigger event or XCom.
    """
    outcome.status_details = redact(outcome.status_details, settings)
    outcome.plugin_errors = [redact(error, settings) for error in outcome.plugin_errors]
    return outcome
