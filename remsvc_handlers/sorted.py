"""The default result handler: results as a list in command order (host by host)."""

from __future__ import annotations

import operator
from typing import Any

from remsvc_core.handlers import ResultRows, reads_result_rows, result_rows

_BY_TID = operator.itemgetter("tid")


@reads_result_rows
def sorted_results(results: Any) -> ResultRows:
    """Results as a list of result dicts in command order (by integer tid).

    On the raw mapping this is exactly the original provider's output: the
    six-key dicts ``tid, rc, out, err, hsh, cmd``, sorted by tid, whether the tids
    arrive as ints or (after a JSON round-trip) as strings. Also takes a list of
    result dicts or a DataFrame from an earlier step; extra keys are kept. The dicts
    returned are copies: changing them changes nothing the handler was given.

    A fan-out's results (each with a ``host``) stay host by host, hosts in the order
    they first appear (the order they were given), each host's results by tid.
    """
    rows = result_rows(results, handler="'sorted'")
    hosts = rows.complete_column("host")
    if hosts is not None:
        place = {host: index for index, host in enumerate(dict.fromkeys(hosts))}
        key = list(zip(map(place.__getitem__, hosts), map(_BY_TID, rows), strict=True))
        return rows.derive(rows[index] for index in sorted(range(len(rows)), key=key.__getitem__))
    # A stable sort; on rows already in command order (the usual case) it is one pass.
    return rows.derive(sorted(rows, key=_BY_TID))
