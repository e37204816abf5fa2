"""remsvc_core: run commands on RemSvc servers and get every result out.

The public API is re-exported here; submodules whose names start with ``_`` and
anything not listed in ``__all__`` are internal. Names are imported on first use,
so ``import remsvc_core`` stays cheap and needs neither Airflow nor pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "1.2.0"

_EXPORTS = {
    # commands and results
    "Command": "remsvc_core.commands",
    "validate_commands": "remsvc_core.commands",
    "CommandResult": "remsvc_core.results",
    "StreamOutcome": "remsvc_core.results",
    "UnexpectedResponse": "remsvc_core.results",
    "command_hash": "remsvc_core.hashing",
    # reaching a server
    "ChannelSettings": "remsvc_core.settings",
    "Secret": "remsvc_core.secret",
    "settings_from_fields": "remsvc_core.connection",
    "settings_from_uri": "remsvc_core.connection",
    # the engine
    "RetryPolicy": "remsvc_core.engine",
    "run_commands": "remsvc_core.engine",
    "run_commands_sync": "remsvc_core.engine",
    "close_channels": "remsvc_core.channels",
    "ping": "remsvc_core.probes",
    "BatchState": "remsvc_core.kept_batches",
    "cancel_batch": "remsvc_core.kept_batches",
    "cancel_batch_sync": "remsvc_core.kept_batches",
    "get_batch": "remsvc_core.kept_batches",
    "get_batch_sync": "remsvc_core.kept_batches",
    "OutputChunk": "remsvc_core.output",
    "Usage": "remsvc_core.results",
    "ping_sync": "remsvc_core.probes",
    "get_status": "remsvc_core.probes",
    "get_status_sync": "remsvc_core.probes",
    # many hosts at once
    "run_fleet": "remsvc_core.fleet.runner",
    "run_fleet_sync": "remsvc_core.fleet.runner",
    "FleetOutcome": "remsvc_core.fleet.outcome",
    "FleetTarget": "remsvc_core.fleet.targets",
    "HostRun": "remsvc_core.fleet.outcome",
    "judge_fleet": "remsvc_core.fleet.verdict",
    "compress_hosts": "remsvc_core.hostlist",
    # plugins and handlers
    "hookimpl": "remsvc_core.hookspecs",
    "register_plugin": "remsvc_core.plugins",
    "PluginError": "remsvc_core.errors",
    "StreamInfo": "remsvc_core.hookspecs",
    "resolve_handler": "remsvc_core.handlers",
    "list_handlers": "remsvc_core.handlers",
    # the reference server
    "EmbeddedServer": "remsvc_core.server.embedded",
    "ServerConfig": "remsvc_core.server.config",
    # errors
    "RemSvcError": "remsvc_core.errors",
    "CommandValidationError": "remsvc_core.errors",
    "SettingsError": "remsvc_core.errors",
    "ServerConfigError": "remsvc_core.errors",
    "HandlerError": "remsvc_core.errors",
    "HandlerNotFoundError": "remsvc_core.errors",
    "CallError": "remsvc_core.errors",
    "StopStream": "remsvc_core.errors",
    "ResultPipeline": "remsvc_core.handlers",
    "HandlerInfo": "remsvc_core.handlers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'remsvc_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:
    from remsvc_core.channels import close_channels as close_channels
    from remsvc_core.commands import (
        Command as Command,
        validate_commands as validate_commands,
    )
    from remsvc_core.connection import (
        settings_from_fields as settings_from_fields,
        settings_from_uri as settings_from_uri,
    )
    from remsvc_core.engine import (
        RetryPolicy as RetryPolicy,
        run_commands as run_commands,
        run_commands_sync as run_commands_sync,
    )
    from remsvc_core.errors import (
        CallError as CallError,
        CommandValidationError as CommandValidationError,
        HandlerError as HandlerError,
        HandlerNotFoundError as HandlerNotFoundError,
        PluginError as PluginError,
        RemSvcError as RemSvcError,
        ServerConfigError as ServerConfigError,
        SettingsError as SettingsError,
        StopStream as StopStream,
    )
    from remsvc_core.fleet.outcome import (
        FleetOutcome as FleetOutcome,
        HostRun as HostRun,
    )
    from remsvc_core.fleet.runner import (
        run_fleet as run_fleet,
        run_fleet_sync as run_fleet_sync,
    )
    from remsvc_core.fleet.targets import FleetTarget as FleetTarget
    from remsvc_core.fleet.verdict import judge_fleet as judge_fleet
    from remsvc_core.handlers import (
        HandlerInfo as HandlerInfo,
        ResultPipeline as ResultPipeline,
        list_handlers as list_handlers,
        resolve_handler as resolve_handler,
    )
    from remsvc_core.hashing import (
        command_hash as command_hash,
    )
    from remsvc_core.hookspecs import (
        StreamInfo as StreamInfo,
        hookimpl as hookimpl,
    )
    from remsvc_core.hostlist import compress_hosts as compress_hosts
    from remsvc_core.kept_batches import (
        BatchState as BatchState,
        cancel_batch as cancel_batch,
        cancel_batch_sync as cancel_batch_sync,
        get_batch as get_batch,
        get_batch_sync as get_batch_sync,
    )
    from remsvc_core.output import OutputChunk as OutputChunk
    from remsvc_core.plugins import (
        register_plugin as register_plugin,
    )
    from remsvc_core.probes import (
        get_status as get_status,
        get_status_sync as get_status_sync,
        ping as ping,
        ping_sync as ping_sync,
    )
    from remsvc_core.results import (
        CommandResult as CommandResult,
        StreamOutcome as StreamOutcome,
        UnexpectedResponse as UnexpectedResponse,
        Usage as Usage,
    )
    from remsvc_core.secret import (
        Secret as Secret,
    )
    from remsvc_core.server.config import (
        ServerConfig as ServerConfig,
    )
    from remsvc_core.server.embedded import (
        EmbeddedServer as EmbeddedServer,
    )
    from remsvc_core.settings import (
        ChannelSettings as ChannelSettings,
    )
