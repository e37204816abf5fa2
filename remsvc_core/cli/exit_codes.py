"""What ``remsvc`` exit statuses mean, and the errors that map to them.

Scripts branch on these numbers, so they are part of the command line's contract.
"""

from __future__ import annotations

from remsvc_core.errors import RemSvcError

OK = 0
FAILED = 1  # a command failed or never answered; partial results are still printed
USAGE = 2  # bad arguments or input; nothing was sent
CONNECTION = 3  # the server could not be reached, refused the TLS handshake or the token
INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

EXIT_STATUS_HELP = """\
exit status:
  0  every command succeeded (its rc is accepted by the handler pipeline)
  1  a command failed or got no result (the results that arrived are still printed)
  2  usage or input error: nothing was sent
  3  connection failure: server unreachable, TLS handshake or token refused
"""


class UsageError(RemSvcError):
    """A command-line mistake; the message names the problem and the fix (exit 2)."""


class ConnectionFailure(RemSvcError):
    """The server could not be reached or refused us (exit 3)."""
