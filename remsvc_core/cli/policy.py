"""``remsvc policy test``: which rule decides a command, and why, without running anything.

The configuration is read exactly as the server reads it (same errors, exit 2), and
the command is checked for one identity and one user the way the server checks it:
the server-wide lists, then the identity's own section. Exit 0 when the command
would run, 1 when it would be refused.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from remsvc_core.cli import exit_codes
from remsvc_core.errors import ServerConfigError
from remsvc_core.server.cli import report_config_error
from remsvc_core.server.config import ServerConfig, load_config
from remsvc_core.server.identity_policy import ANONYMOUS
from remsvc_core.server.policy import CommandPolicy

_PROGRAM = "remsvc policy test"

_DESCRIPTION = """\
Check one command against a server's configuration: the server-wide [allowlist] and
[denylist], then the [identity NAME] section of the caller, and the users it may
run as. Prints whether the command would run, the rule that decides, and why.
Nothing is run and no server is contacted.
"""

_EPILOG = """\
exit status:
  0  the command would run
  1  the command would be refused
  2  the configuration is invalid, or --as names no possible caller
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "policy",
        help="check which commands a server configuration lets run",
        description="Check a server configuration's command policy.",
    )
    actions = parser.add_subparsers(
        dest="policy_action", metavar="ACTION", required=True, parser_class=type(parser)
    )
    test = actions.add_parser(
        "test",
        help="say which rule decides one command, without running it",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument("--config", required=True, metavar="FILE", help="the server's INI file")
    test.add_argument(
        "--as",
        dest="identity",
        metavar="IDENTITY",
        help="the caller: an identity of [auth], or a client certificate's name with "
        f"mutual TLS and no tokens (default without either: {ANONYMOUS})",
    )
    test.add_argument(
        "--user",
        default="",
        metavar="USER",
        help="the user the command asks to run as (cmdusr); default: none, which runs as "
        "the server's own user, taken here to be the user running this check",
    )
    test.add_argument("command", metavar="CMD", help="the command line, as the caller sends it")
    test.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        identity = _caller(config, args.identity)
    except ServerConfigError as exc:
        return report_config_error(_PROGRAM, exc)
    policy = CommandPolicy.from_config(config)
    decision = policy.check(args.command, identity, args.user)
    user = args.user or (
        f"{policy.own_user} (cmdusr empty: the server's own user, taken to be the user "
        "running this check)"
    )
    print("allowed" if decision.allowed else "refused")
    print(f"rule:     {decision.rule or '(none: no rule refuses it)'}")
    print(f"reason:   {decision.reason}")
    print(f"identity: {identity}")
    print(f"user:     {user}")
    print(f"command:  {args.command!r}")
    return exit_codes.OK if decision.allowed else exit_codes.FAILED


def _caller(config: ServerConfig, wanted: str | None) -> str:
    """The identity to check as; :class:`ServerConfigError` if no caller can be it."""
    source = config.identity_source
    if source == "certificate":
        if wanted is None:
            raise ServerConfigError(
                f"{config.source}: callers are named by their client certificates; "
                "give the name to check as with --as NAME"
            )
        return wanted
    possible = config.identities if source == "token" else [ANONYMOUS]
    if wanted is None and source == "none":
        return ANONYMOUS
    if wanted in possible:
        return wanted
    close = difflib.get_close_matches(wanted or "", possible, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    named = "no identity given" if wanted is None else f"no caller can be {wanted!r}"
    raise ServerConfigError(
        f"{config.source}: {named}{hint}; give --as one of: {', '.join(possible)}"
    )
