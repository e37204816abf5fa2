"""Run a doc's python blocks in order, in one namespace, like a reader pasting them.

Usage: ``python run_python_blocks.py BLOCKS.json`` where the file holds
``[{"where": "docs/x.md:12", "code": "..."}]``. Exits 1 naming the failing block.
"""

from __future__ import annotations

import json
import sys
import traceback


def main(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        blocks = json.load(handle)
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in blocks:
        print(f"=== {block['where']}", flush=True)
        try:
            code = compile(block["code"], block["where"], "exec")
            exec(code, namespace)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED: the example at {block['where']}", file=sys.stderr)
            return 1
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
