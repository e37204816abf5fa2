"""The ``remsvc`` parser and ``main``: dispatch, and errors turned into exit statuses."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from remsvc_core import __version__
from remsvc_core.cli import (
    batches,
    exit_codes,
    handlers,
    new_handler,
    ping,
    plugins,
    policy,
    run,
    serve,
    status,
)
from remsvc_core.cli.exit_codes import ConnectionFailure, UsageError
from remsvc_core.cli.output import silence_stdout
from remsvc_core.errors import (
    CommandValidationError,
    HandlerError,
    RemSvcError,
    ServerConfigError,
    SettingsError,
)
from remsvc_core.printable import printable

DESCRIPTION = """\
Run shell and PowerShell commands on RemSvc servers and print every result.
Without --target, commands run on a reference server started in-process.
"""

# Errors that mean "you asked for something that cannot work": nothing was sent.
_USAGE_ERRORS = (UsageError, CommandValidationError, SettingsError, ServerConfigError, HandlerError)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem, then where to read more."""

    def error(self, message: str) -> NoReturn:
        self.exit(exit_codes.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="remsvc",
        description=DESCRIPTION,
        epilog=exit_codes.EXIT_STATUS_HELP
        + "\nRun `remsvc COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"remsvc {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one-line errors"
    )
    subparsers = parser.add_subparsers(
        dest="subcommand", metavar="COMMAND", parser_class=_Parser, required=True
    )
    for module in (run, batches, handlers, plugins, new_handler, ping, status, serve, policy):
        module.register(subparsers)
    for subparser in subparsers.choices.values():
        # Also accepted after the subcommand; SUPPRESS keeps an earlier --debug when absent.
        subparser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``remsvc`` console script; returns the exit status."""
    _tolerate_unencodable_output()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse's own usage errors
        return exc.code if isinstance(exc.code, int) else exit_codes.USAGE
    except UsageError as exc:  # raised by our own argparse actions and types
        print(f"remsvc: error: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    if args.subcommand != "serve":  # the server sets up its own logging
        _configure_logging(debug=args.debug)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("remsvc: interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except BrokenPipeError:
        # `remsvc run ... | head`: the reader left; that is not a failure to report.
        silence_stdout()
        return exit_codes.OK
    except RemSvcError as exc:
        if args.debug:
            raise
        # An error can carry the server's status details: no escape sequences, one line.
        print(f"remsvc: error: {printable(str(exc))}", file=sys.stderr)
        return exit_status_for(exc)


def exit_status_for(error: RemSvcError) -> int:
    """The exit status an error maps to (see EXIT_STATUS_HELP)."""
    if isinstance(error, _USAGE_ERRORS):
        return exit_codes.USAGE
    if isinstance(error, ConnectionFailure):
        return exit_codes.CONNECTION
    return exit_codes.FAILED


def _configure_logging(*, debug: bool) -> None:
    # Stream failures, plugin errors and refusals are already in the summary we
    # print; the library's warnings about them (and the embedded server's INFO lines)
    # would only say it twice. The level is on the handler because the server's
    # logger sets its own level, which a root-logger level would not override.
    root = logging.getLogger()
    if root.handlers:  # the embedding program (or pytest) owns logging
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.DEBUG if debug else logging.ERROR)
    handler.setFormatter(logging.Formatter("remsvc: %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if debug:
        root.setLevel(logging.DEBUG)


def _tolerate_unencodable_output() -> None:
    # Remote output can hold characters a non-UTF-8 terminal cannot show; print them
    # escaped rather than die with UnicodeEncodeError after the results arrived.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")
