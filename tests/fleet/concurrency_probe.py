"""Run by the simulated hosts as a command: counts the commands running at once.

``python concurrency_probe.py STATE LIMIT TOTAL`` adds itself to the running count in
STATE (a JSON file, under an exclusive lock), records the highest count seen and how
many ran, and waits (bounded) until the count has once reached ``min(LIMIT, TOTAL)``
before it leaves. So when the fan-out starts hosts as it should, the first wave meets
and the peak is exactly the limit; the peak can only exceed it if more hosts run at
once than allowed. Exits 0.
"""

from __future__ import annotations

import fcntl
import json
import sys
import time
from typing import Any

WAIT_S = 10.0


def update(path: str, change: int) -> dict[str, Any]:
    with open(path, "a+", encoding="ascii") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        data = json.loads(handle.read() or '{"running": 0, "peak": 0, "started": 0}')
        data["running"] += change
        if change > 0:
            data["started"] += 1
            data["peak"] = max(data["peak"], data["running"])
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(data))
        return dict(data)


def main() -> None:
    path, limit, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    update(path, +1)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if update(path, 0)["peak"] >= min(limit, total):
            break
        time.sleep(0.02)
    update(path, -1)
    print("probe done")


if __name__ == "__main__":
    main()
