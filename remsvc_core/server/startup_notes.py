"""What the server says about its configuration as it starts, once its log is set up.

Some things are not errors but deserve an operator's attention: keys accepted from
upstream files and ignored, TLS files given while TLS is off, and secrets other
users of the machine can read. Reading the file collects them (``ServerConfig.notes``);
the private key's permissions are looked at here, when the server starts. They are
logged once the log (stderr and ``[log] file``) is set up, so they reach both.
"""

from __future__ import annotations

import logging
import os
import stat

from remsvc_core.server.config import ServerConfig

__all__ = ["log_startup_notes", "startup_notes"]


def startup_notes(config: ServerConfig) -> list[tuple[int, str]]:
    """``(logging level, text)`` for everything worth saying about ``config`` at startup."""
    notes = list(config.notes)
    if config.tls_enabled and config.tls_key:
        try:
            mode = os.stat(config.tls_key).st_mode
        except OSError:
            mode = 0  # unreadable: validate() has already said so
        if mode & stat.S_IROTH:
            notes.append(
                (
                    logging.WARNING,
                    f"{config.source}: [tls] key {config.tls_key!r} is readable by every user "
                    "of this machine; make it readable by the server's user only "
                    "(chmod 640, owner root, group the server's)",
                )
            )
    return notes


def log_startup_notes(config: ServerConfig, logger: logging.Logger) -> None:
    for level, text in startup_notes(config):
        logger.log(level, "%s", text)
