"""The benchmark entry point: ``python -m benchmarks [--quick | --smoke] [options]``.

Runs the scenarios of issue #7 in order, prints one table and writes it as Markdown
and JSON (``<out>/<mode>.md`` and ``<out>/<mode>.json``; ``benchmarks/results/`` by
default, where only ``full.*`` is committed). A scenario that fails is reported as an
error and the others still run; the exit code is 1 when any scenario failed. Missed
targets are findings, not failures: they do not change the exit code.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import tempfile
import time
import traceback

from benchmarks.machine import describe_machine, load_average
from benchmarks.report import ScenarioResult, render_json, render_markdown, render_table
from benchmarks.scenarios import MODES, Context, all_scenarios

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _parser() -> argparse.ArgumentParser:
    scenarios = [module.KEY for module in all_scenarios()]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure remsvc against its baselines (issue #7) and write the table.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="mode",
        help="smaller counts, a couple of minutes (for CI)",
    )
    size.add_argument(
        "--smoke",
        action="store_const",
        const="smoke",
        dest="mode",
        help="tiny counts: only checks that everything runs (for the test suite)",
    )
    size.add_argument(
        "--full",
        action="store_const",
        const="full",
        dest="mode",
        help="the counts issue #7 asks for (the default)",
    )
    parser.add_argument(
        "--only",
        default="",
        metavar="NAMES",
        help=f"comma-separated scenarios to run, of: {', '.join(scenarios)}",
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where to write MODE.md and MODE.json (default: benchmarks/results)",
    )
    parser.add_argument(
        "--install-sshd",
        action="store_true",
        help="apt-get install openssh-server if sshd is missing (scenario 6)",
    )
    parser.add_argument(
        "--compare-original",
        action="store_true",
        help="also measure airflow-provider-remsvc 1.0.0 (pip-installed into a temp dir)",
    )
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="a line to add to the machine description, e.g. 'shared with other jobs'",
    )
    parser.set_defaults(mode="full")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    modules = all_scenarios()
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        known = {module.KEY: module for module in modules}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            print(
                f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(known)}",
                file=sys.stderr,
            )
            return 2
        modules = [known[name] for name in wanted]

    sizes = MODES[args.mode]
    machine = describe_machine()
    for line in args.note:
        machine.setdefault("notes", "")
        machine["notes"] = (machine["notes"] + "; " if machine["notes"] else "") + line
    started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    wall0 = time.monotonic()
    results: list[ScenarioResult] = []
    with tempfile.TemporaryDirectory(prefix="remsvc-bench-") as workdir:
        ctx = Context(
            mode=args.mode,
            sizes=sizes,
            workdir=workdir,
            install_sshd=args.install_sshd,
            compare_original=args.compare_original,
        )
        for module in modules:
            ctx.log(f"--- {module.TITLE}")
            t0 = time.monotonic()
            try:
                result: ScenarioResult = module.run(ctx)
            except Exception as exc:  # one broken scenario must not hide the others
                traceback.print_exc(file=sys.stderr)
                result = ScenarioResult(
                    module.KEY, module.TITLE, error=f"{type(exc).__name__}: {exc}"
                )
            result.elapsed_s = time.monotonic() - t0
            results.append(result)
    machine["load average at end (1/5/15 min)"] = load_average()
    run = {
        "mode": args.mode,
        "command": "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "started": started.isoformat(),
        "elapsed_s": time.monotonic() - wall0,
        "machine": machine,
        "sizes_notes": sizes.notes,
    }
    if sizes.notes:
        machine["mode notes"] = "; ".join(sizes.notes)

    os.makedirs(args.out, exist_ok=True)
    md_path = os.path.join(args.out, f"{args.mode}.md")
    json_path = os.path.join(args.out, f"{args.mode}.json")
    with open(md_path, "w", encoding="utf-8") as handle:
        handle.write(render_markdown(run, results))
    with open(json_path, "w", encoding="utf-8") as handle:
        handle.write(render_json(run, results))
    print(render_table(results))
    print(f"\nwrote {md_path} and {json_path} ({run['elapsed_s']:.0f} s)")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
