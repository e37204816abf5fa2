"""The ``remsvc`` command line: run commands, list handlers, ping, status, serve.

Each subcommand lives in its own module (``run``, ``handlers``, ``ping``, ``status``,
``serve``); ``output`` formats tables, JSON and CSV for all of them, and ``app``
builds the parser and dispatches. This package imports none of them itself, so a
subcommand module importing a sibling never runs into a half-initialised package.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``remsvc`` console script; returns the exit status."""
    from remsvc_core.cli.app import main as run_main

    return run_main(argv)


def build_parser() -> argparse.ArgumentParser:
    """The ``remsvc`` argument parser."""
    from remsvc_core.cli.app import build_parser as build

    return build()
