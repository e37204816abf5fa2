"""The exceptions remsvc raises, as one small hierarchy.

Catch :class:`RemSvcError` for everything, or a subclass for one kind of failure.
Messages name the problem and the fix; none of them ever contains a bearer token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from remsvc_core.results import StreamOutcome


class RemSvcError(Exception):
    """Base class of every error remsvc raises on purpose."""


class CommandValidationError(RemSvcError, ValueError):
    """A command batch is malformed; raised before anything is sent."""


class SettingsError(RemSvcError, ValueError):
    """Channel or connection settings cannot be honoured (bad path, bad combination)."""


class ServerConfigError(RemSvcError, ValueError):
    """The reference server's INI configuration is invalid; names file, section, key."""


class HandlerError(RemSvcError):
    """A result handler could not be resolved or failed while shaping results."""


class HandlerNotFoundError(HandlerError, LookupError):
    """No installed handler has the requested name."""


class StopStream(RemSvcError):
    """Raised by a ``remsvc_result`` hook implementation to end the stream early on purpose.

    The engine cancels the call (our server then kills the running command), keeps
    every result that arrived, and records ``str(exc)`` in the outcome's status details.
    Any other exception from a hook is a plugin error: reported, never fatal.
    """


class StreamError(RemSvcError):
    """A stream ended badly. ``outcome`` keeps every result that did arrive."""

    def __init__(self, message: str, outcome: StreamOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome
