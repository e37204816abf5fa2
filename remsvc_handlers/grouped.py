"""Hosts grouped by identical output, like ``dshbak -c``: one row per command and output."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from remsvc_core.errors import HandlerError
from remsvc_core.handlers import ResultRows, reads_result_rows, result_handler, result_rows
from remsvc_core.hostlist import compress_hosts

COMPARED = ("rc", "out", "err")


def validate_options(*, compare: Any = COMPARED) -> None:
    """``compare`` must name one or more of ``rc``, ``out``, ``err``."""
    _compared(compare)


def _compared(compare: Any) -> tuple[str, ...]:
    if isinstance(compare, str):
        compare = [compare]
    if not isinstance(compare, Iterable):
        raise ValueError(f"compare must be a list of fields among {', '.join(COMPARED)}")
    fields = tuple(dict.fromkeys(compare))
    unknown = [field for field in fields if field not in COMPARED]
    if unknown or not fields:
        raise ValueError(
            f"compare={list(fields)!r}: give one or more of {', '.join(COMPARED)}"
            + (f" ({', '.join(map(repr, unknown))} is not one)" if unknown else "")
        )
    return tuple(field for field in COMPARED if field in fields)


@reads_result_rows
@result_handler(validate_options=validate_options)
def grouped(results: Any, *, compare: Any = COMPARED) -> ResultRows:
    """Hosts with identical output grouped together, per command (like ``dshbak -c``).

    Takes the results of a fan-out (each with a ``host``). For every command (tid),
    the hosts whose results are equal in the ``compare`` fields (default ``rc``,
    ``out`` and ``err``) form one group; the biggest group comes first. Each group is
    one dict: ``tid``, ``cmd``, ``hosts`` (the group's hosts, written short:
    ``web1–web97, web99``), ``host_count``, then the compared fields. Read them as
    "web1–web97: X; web98–web100: Y".
    """
    fields = _compared(compare)
    rows = result_rows(results, handler="'grouped'")
    hosts = rows.column("host")
    if rows and any(host is None for host in hosts):
        raise HandlerError(
            "'grouped' groups hosts by their output, and these results have no 'host'; "
            "run the batch on several hosts (run_fleet, `remsvc run --target A --target B`, "
            "RemSvcFleetOperator)"
        )
    groups: dict[tuple[Any, ...], list[str]] = {}
    first: dict[tuple[Any, ...], Any] = {}
    for row, host in zip(rows, hosts, strict=True):
        key = (row["tid"], *(row.get(field) for field in fields))
        groups.setdefault(key, []).append(str(host))
        first.setdefault(key, row)
    ordered = sorted(groups, key=lambda key: (key[0], -len(groups[key])))
    return ResultRows.fresh(
        {
            "tid": key[0],
            "cmd": first[key].get("cmd", ""),
            "hosts": compress_hosts(groups[key]),
            "host_count": len(groups[key]),
            **dict(zip(fields, key[1:], strict=True)),
        }
        for key in ordered
    )
