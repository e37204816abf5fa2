"""The ``remsvc`` command line: run commands, list handlers, ping, status, serve.

Each subcommand lives in its own module (``run``, ``handlers``, ``ping``, ``status``,
``serve``); ``output`` formats tables, JSON and CSV for all of them.
"""

from __future__ import annotations

from remsvc_core.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
