"""The servers of a fan-out on the command line: repeated --target and --conn, and
--targets-file.

Each is ``[LABEL=]HOST[:PORT]`` or ``[LABEL=]remsvc://...`` (a connection URI without
a token; --conn takes only those); a file holds one per line, blank lines and ``#``
comments skipped. The TLS, token and metadata options apply to every server. Without
``LABEL=`` a server is labelled by its host (``host:port`` off the default port).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Iterator
from typing import Any

from remsvc_core.cli.exit_codes import UsageError
from remsvc_core.cli.inputs import read_input
from remsvc_core.cli.target import conn_settings, option_overrides, with_default_port
from remsvc_core.errors import SettingsError
from remsvc_core.fleet.targets import FleetTarget, default_label, fleet_targets
from remsvc_core.settings import ChannelSettings

__all__ = ["FLEET_OPTIONS", "cli_targets", "wants_fleet"]

#: The options that only mean something for a fan-out.
FLEET_OPTIONS = ("max_concurrency", "max_errors", "success_threshold")
# A label is a plain name followed by "=": a URI or HOST:PORT never looks like one,
# since ':' and '/' come before any '=' there.
_LABELLED = re.compile(r"(?P<label>[A-Za-z0-9_.-]+)\s*=\s*(?P<target>.+)")
_FORM = "write [LABEL=]HOST:PORT or [LABEL=]remsvc://HOST:PORT?..."


def wants_fleet(args: argparse.Namespace) -> bool:
    """Whether ``remsvc run`` runs on several servers: more than one named, a targets
    file, or an option that only a fan-out has."""
    named = len(args.target or []) + len(args.conn or [])
    given = [name for name in FLEET_OPTIONS if getattr(args, name, None) is not None]
    return named > 1 or bool(args.targets_file) or bool(given)


def cli_targets(args: argparse.Namespace) -> list[FleetTarget]:
    """Every server the options name, in order: --target, --conn, then the file's."""
    overrides = option_overrides(args)
    given = list(_given(args))
    if args.targets_file and not any(where.startswith("--targets-file") for where, *_ in given):
        raise UsageError(
            f"--targets-file {args.targets_file!r} lists no server; {_FORM}, one per line"
        )
    found = [_parse(value, where, overrides, is_uri) for where, value, is_uri in given]
    try:
        return fleet_targets(
            [(label or default_label(settings), settings) for label, settings in found]
        )
    except SettingsError as exc:
        raise UsageError(f"{exc}") from None


def _given(args: argparse.Namespace) -> Iterator[tuple[str, str, bool]]:
    for value in args.target or []:
        yield f"--target {value!r}", value, False
    for value in args.conn or []:
        yield "--conn", value, True
    if args.targets_file:
        name = args.targets_file
        for number, line in enumerate(read_input(name, "--targets-file").splitlines(), start=1):
            text = line.strip()
            if text and not text.startswith("#"):
                yield f"--targets-file {name!r} line {number}", text, False


def _parse(
    value: str, where: str, overrides: dict[str, Any], is_uri: bool
) -> tuple[str | None, ChannelSettings]:
    label = None
    text = value.strip()
    labelled = _LABELLED.fullmatch(text)
    if labelled:
        label, text = labelled["label"], labelled["target"].strip()
    if not text or any(char.isspace() for char in text):
        raise UsageError(f"{where}: {text!r} is not a server; {_FORM}")
    try:
        if text.startswith("remsvc://") or is_uri:
            base = conn_settings(text, where=f"{where}: the URI")
        else:
            base = ChannelSettings(target=with_default_port(text))
        return label, dataclasses.replace(base, **overrides)
    except (SettingsError, UsageError) as exc:
        message = str(exc)
        prefix = "" if message.startswith(where) else f"{where}: "
        raise UsageError(f"{prefix}{message}") from None
