"""Every exception remsvc raises on purpose, as one small hierarchy.

Catch :class:`RemSvcError` for everything, or a subclass for one kind of failure.
Messages name the problem and the fix; none of them ever contains a bearer token.

This module depends on nothing else in remsvc, so any module may import it.

::

    RemSvcError
    ├── CommandValidationError   a command batch is malformed (nothing was sent)
    ├── SettingsError            channel or connection settings cannot be honoured
    ├── ServerConfigError        the reference server's configuration is invalid
    ├── HandlerError             a result handler cannot be resolved, or failed
    │   └── HandlerNotFoundError no installed handler has that name
    ├── PluginError              a plugin object cannot be used
    ├── CallError                a gRPC call failed; carries its status code
    └── StopStream               raised by a hook on purpose to end a stream early
"""

from __future__ import annotations

__all__ = [
    "CONNECTION_CODES",
    "CallError",
    "CommandValidationError",
    "HandlerError",
    "HandlerNotFoundError",
    "PluginError",
    "RemSvcError",
    "ServerConfigError",
    "SettingsError",
    "StopStream",
]

#: gRPC status codes that mean "we never got to talk to the server properly" (it is
#: unreachable, or refused who we are), as opposed to "a command failed".
CONNECTION_CODES = frozenset({"UNAVAILABLE", "UNAUTHENTICATED"})


class RemSvcError(Exception):
    """Base class of every error remsvc raises on purpose."""


class CommandValidationError(RemSvcError, ValueError):
    """A command batch is malformed; raised before anything is sent."""


class SettingsError(RemSvcError, ValueError):
    """Channel or connection settings cannot be honoured (bad path, bad combination)."""


class ServerConfigError(RemSvcError, ValueError):
    """The reference server's configuration is invalid; names file, section, key."""


class HandlerError(RemSvcError):
    """A result handler could not be resolved or failed while shaping results."""


class HandlerNotFoundError(HandlerError, LookupError):
    """No installed handler has the requested name."""


class PluginError(RemSvcError, ValueError):
    """A plugin object cannot be used (no hooks, unknown hook name, bad signature)."""


class CallError(RemSvcError):
    """A gRPC call (``Ping``, ``GetStatus``, ...) failed.

    ``code`` is the gRPC status name (``"UNAVAILABLE"``, ``"UNAUTHENTICATED"``, ...),
    ``details`` the status message, ``target`` the server's ``host:port`` and ``hint``
    what is probably wrong and how to fix it ("" when nothing is known), so a caller
    can branch on what happened, or word it, without parsing the message.
    """

    def __init__(
        self, message: str, *, code: str, details: str = "", target: str = "", hint: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details = details
        self.target = target
        self.hint = hint

    @property
    def connection_failed(self) -> bool:
        """True when the server could not be reached or refused the caller's identity."""
        return self.code in CONNECTION_CODES


class StopStream(RemSvcError):
    """Raised by a ``remsvc_result`` hook implementation to end the stream early on purpose.

    The engine cancels the call (our server then kills the running command), keeps
    every result that arrived, and records ``str(exc)`` in the outcome's status details.
    Any other exception from a hook is a plugin error: reported, never fatal.
    """
