"""The default result handler: results as a list in command order."""

from __future__ import annotations

from typing import Any

from remsvc_core.handlers import result_list


def sorted_results(results: Any) -> list[dict[str, Any]]:
    """Results as a list of result dicts in command order (by integer tid).

    On the raw mapping this is exactly the original provider's output: the
    six-key dicts ``tid, rc, out, err, hsh, cmd``, sorted by tid, whether the tids
    arrive as ints or (after a JSON round-trip) as strings. Also takes a list of
    result dicts or a DataFrame from an earlier step; extra keys are kept.
    """
    return sorted(result_list(results, handler="'sorted'"), key=lambda row: row["tid"])
