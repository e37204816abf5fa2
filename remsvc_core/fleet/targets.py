"""The hosts of a fan-out: each a label and the settings that reach it.

Targets come in the forms people have them: :class:`ChannelSettings`, connection URIs
(``remsvc://host:port?...``), ``(label, settings_or_uri)`` pairs, or a mapping of
labels to either. A target without a label is named after its server: the host
alone when it listens on the default port, ``host:port`` otherwise. Labels key every
result, so two targets may not share one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from remsvc_core.connection import settings_from_uri
from remsvc_core.errors import SettingsError
from remsvc_core.settings import DEFAULT_PORT, ChannelSettings

__all__ = ["MAX_LABEL_CHARS", "FleetTarget", "default_label", "fleet_targets"]

#: Labels travel in logs, XCom and batch keys: keep them short enough to read.
MAX_LABEL_CHARS = 200
_FORMS = (
    "give ChannelSettings, remsvc:// connection URIs, (label, settings or URI) pairs, "
    "or a mapping of labels to settings or URIs"
)


@dataclass(frozen=True)
class FleetTarget:
    """One host of a fan-out: ``host`` is its label (how results are keyed), and
    ``settings`` say how to reach its server."""

    host: str
    settings: ChannelSettings

    def __post_init__(self) -> None:
        check_label(self.host)
        if not isinstance(self.settings, ChannelSettings):
            raise SettingsError(
                f"host {self.host!r}: settings must be a ChannelSettings, got "
                f"{type(self.settings).__name__}"
            )


def default_label(settings: ChannelSettings) -> str:
    """The label of a target given without one: ``host``, or ``host:port`` when the
    port is not the default one."""
    host, _, port = settings.target.rpartition(":")
    if not host:
        return settings.target
    return host.strip("[]") if port == str(DEFAULT_PORT) else settings.target


def check_label(label: object) -> str:
    """``label`` if it can name a host in results and logs, else :class:`SettingsError`."""
    if not isinstance(label, str) or not label.strip():
        raise SettingsError(f"a host label must be a non-empty string, got {label!r}")
    if label != label.strip() or not label.isprintable():
        raise SettingsError(
            f"host label {label!r} has surrounding spaces or control characters; "
            "labels appear in logs and tables, so use plain text"
        )
    if len(label) > MAX_LABEL_CHARS:
        raise SettingsError(
            f"host label {label[:40]!r}... is {len(label)} characters; at most "
            f"{MAX_LABEL_CHARS} are allowed"
        )
    return label


def fleet_targets(targets: Any) -> list[FleetTarget]:
    """``targets`` as a list of :class:`FleetTarget`, in the order given.

    Raises :class:`SettingsError` naming the entry for anything that is not a target,
    for an empty list, and for a label used twice.
    """
    if isinstance(targets, (str, bytes, ChannelSettings)) or not isinstance(
        targets, (Mapping, Iterable)
    ):
        raise SettingsError(f"targets must be a collection of targets; {_FORMS}")
    items = list(targets.items()) if isinstance(targets, Mapping) else list(targets)
    if not items:
        raise SettingsError(f"targets is empty; {_FORMS}")
    found = [_target(item, index) for index, item in enumerate(items)]
    seen: dict[str, int] = {}
    for index, target in enumerate(found):
        if target.host in seen:
            raise SettingsError(
                f"targets[{seen[target.host]}] and targets[{index}] are both labelled "
                f"{target.host!r}; every host needs its own label (give (label, target) "
                "pairs or a mapping of labels)"
            )
        seen[target.host] = index
    return found


def _target(item: Any, index: int) -> FleetTarget:
    if isinstance(item, FleetTarget):
        return item
    label: str | None = None
    where = item
    if isinstance(item, tuple) and len(item) == 2:
        label, where = check_label(item[0]), item[1]
    try:
        settings = _settings(where)
    except SettingsError as exc:
        name = f" ({label!r})" if label else ""
        raise SettingsError(f"targets[{index}]{name}: {exc}") from None
    return FleetTarget(label if label is not None else default_label(settings), settings)


def _settings(value: Any) -> ChannelSettings:
    if isinstance(value, ChannelSettings):
        return value
    if isinstance(value, str):
        return settings_from_uri(value.strip())
    raise SettingsError(f"{type(value).__name__} is not a target; {_FORMS}")
