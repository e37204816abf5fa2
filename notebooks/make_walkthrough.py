"""Write notebooks/analyst-walkthrough.ipynb from the cells below.

The notebook is generated so that it stays reviewable as plain Python and carries no
outputs: edit the cells here, run ``python notebooks/make_walkthrough.py``, commit
both files. ``tests/docs/test_notebook.py`` checks the two agree and executes the
notebook from top to bottom.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat

NOTEBOOK = Path(__file__).with_name("analyst-walkthrough.ipynb")

CELLS: list[tuple[str, str]] = [
    (
        "markdown",
        """
# Inspecting hosts with remsvc: an analyst's walk-through

This notebook runs a batch of read-only inspection commands (disk, memory,
uptime, load, package versions) on several hosts at once, turns the answers
into pandas DataFrames, filters and groups them, draws a chart and writes CSV
and Parquet files. No Airflow is involved.

**Which hosts.** By default it starts two reference servers on this machine
(loopback only) that stand in for two hosts, so it runs anywhere. To use real
servers instead, start Jupyter with:

* `REMSVC_TARGETS=db1.example.com:50051,web1.example.com:50051`
* `REMSVC_CA_CERT=/path/to/ca.crt` if they use TLS with your own CA
  (`REMSVC_TLS=1` for TLS with the system's trusted CAs)
* `REMSVC_TOKEN=...` if they want a bearer token

**Where the files go.** `walkthrough-output/` next to the notebook, or the
directory in `REMSVC_WALKTHROUGH_OUT`.

Needs `pip install ".[notebook]"` (pandas, matplotlib, pyarrow).
""",
    ),
    (
        "code",
        """
import asyncio
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw into files: works the same headless and in Jupyter
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image, display

from remsvc_core import ChannelSettings, EmbeddedServer, resolve_handler, run_commands

OUT = Path(os.environ.get("REMSVC_WALKTHROUGH_OUT", "walkthrough-output"))
OUT.mkdir(parents=True, exist_ok=True)
print("writing files to", OUT.resolve())
""",
    ),
    (
        "markdown",
        """
## 1. The hosts

One `ChannelSettings` per server says where it is and how to talk to it
(TLS, CA, token). The token is kept as a `Secret`: it never shows up when
the settings are printed.
""",
    ),
    (
        "code",
        """
def hosts_from_environment():
    \"\"\"{target: ChannelSettings} for REMSVC_TARGETS, or None when it is not set.\"\"\"
    targets = [t.strip() for t in os.environ.get("REMSVC_TARGETS", "").split(",")]
    targets = [t for t in targets if t]
    if not targets:
        return None
    ca_cert = os.environ.get("REMSVC_CA_CERT") or None
    use_tls = ca_cert is not None or os.environ.get("REMSVC_TLS") == "1"
    token = os.environ.get("REMSVC_TOKEN") or None
    return {
        target: ChannelSettings(
            target=target, use_tls=use_tls, ca_cert_path=ca_cert, bearer_token=token
        )
        for target in targets
    }


local_servers = []
hosts = hosts_from_environment()
if hosts is None:
    # Two reference servers on 127.0.0.1 stand in for two hosts.
    local_servers = [EmbeddedServer().start() for _ in range(2)]
    names = ["web1", "db1"]
    hosts = {name: server.settings() for name, server in zip(names, local_servers, strict=True)}

for name, settings in hosts.items():
    print(f"{name:>8}: {settings.safe_description()}")
""",
    ),
    (
        "markdown",
        """
## 2. The batch

Plain shell commands, the same on every host. `src` labels them in the
servers' logs. All of them only read.
""",
    ),
    (
        "code",
        """
PACKAGES = ["bash", "coreutils", "libc6", "openssl", "tzdata"]

commands = [
    {"cmd": "df -P -x tmpfs -x devtmpfs", "src": "walkthrough"},
    {"cmd": "cat /proc/meminfo", "src": "walkthrough"},
    {"cmd": "cat /proc/uptime", "src": "walkthrough"},
    {"cmd": "cat /proc/loadavg", "src": "walkthrough"},
    {"cmd": "python3 --version", "src": "walkthrough"},
    {
        "cmd": "dpkg-query -W -f='${Package}\\\\t${Version}\\\\n' " + " ".join(PACKAGES),
        "src": "walkthrough",
    },
]
[c["cmd"] for c in commands]
""",
    ),
    (
        "markdown",
        """
## 3. Run it everywhere at once

`run_commands` sends one host's whole batch over one stream; `asyncio.gather`
runs the hosts' streams side by side. The notebook's kernel already runs an
event loop, so the cell simply awaits. A stream that fails does not raise:
its outcome says how it ended and keeps every result that arrived.
""",
    ),
    (
        "code",
        """
async def survey(hosts, commands):
    streams = [run_commands(commands, settings, stream_timeout=120) for settings in hosts.values()]
    outcomes = await asyncio.gather(*streams)
    return dict(zip(hosts, outcomes, strict=True))


outcomes = await survey(hosts, commands)

for name, outcome in outcomes.items():
    print(
        f"{name:>8}: {outcome.status_code}, {len(outcome.results)} of "
        f"{len(outcome.commands)} results in {outcome.elapsed_s:.2f}s"
    )
    if not outcome.complete:
        print("          ", outcome.describe_failure())
assert all(outcome.complete for outcome in outcomes.values()), "a host did not answer fully"
""",
    ),
    (
        "markdown",
        """
## 4. One DataFrame for all results

A handler pipeline turns each outcome into a DataFrame: `rc_filter` says
which exit codes count as success (`dpkg-query` exits 1 when one of the
packages is not installed, `df` when a mount cannot be read; the rest of
their output is still good), `dataframe` makes one row per command. The
pipeline also answers which commands failed by that measure.
""",
    ),
    (
        "code",
        """
accept_0_and_1 = {"name": "rc_filter", "options": {"accept": [0, 1]}}
pipeline = resolve_handler([accept_0_and_1, "dataframe"])

results = pd.concat(
    [pipeline.apply(outcome).assign(host=name) for name, outcome in outcomes.items()],
    ignore_index=True,
)[["host", "tid", "cmd", "rc", "out", "err"]]

failed = {name: pipeline.failed_tids(outcome.raw_results()) for name, outcome in outcomes.items()}
print("accepted exit codes:", sorted(pipeline.accepted_rcs))
print("failed tids per host:", failed)
results[["host", "tid", "cmd", "rc"]]
""",
    ),
    (
        "markdown",
        """
## 5. From text to numbers

Each command's `out` is parsed into a table of its own.
""",
    ),
    (
        "code",
        """
def outputs(prefix):
    \"\"\"{host: out} of the command that starts with prefix.\"\"\"
    rows = results[results["cmd"].str.startswith(prefix)]
    return dict(zip(rows["host"], rows["out"], strict=True))


GIB = 2**30

# df -P: a header line, then "filesystem 1024-blocks used available capacity mount"
DF_COLUMNS = ["filesystem", "kblocks", "used", "available", "capacity", "mount"]
disks = pd.DataFrame(
    [
        {"host": host, **dict(zip(DF_COLUMNS, line.split(maxsplit=5), strict=True))}
        for host, out in outputs("df -P").items()
        for line in out.splitlines()[1:]
    ]
)
disks["size_gib"] = pd.to_numeric(disks["kblocks"]) * 1024 / GIB
disks["used_gib"] = pd.to_numeric(disks["used"]) * 1024 / GIB
# df shows "-" for file systems without a size
used_pct = pd.to_numeric(disks["capacity"].str.rstrip("%"), errors="coerce")
disks["used_pct"] = used_pct.fillna(0)
disks = disks[["host", "mount", "filesystem", "size_gib", "used_gib", "used_pct"]]

# /proc/meminfo: "MemTotal:       16318480 kB"
memory = pd.DataFrame(
    [
        {
            "host": host,
            **{
                key: int(value.split()[0]) * 1024
                for key, value in (line.split(":", 1) for line in out.splitlines())
                if key in ("MemTotal", "MemAvailable")
            },
        }
        for host, out in outputs("cat /proc/meminfo").items()
    ]
)
memory["used_pct"] = 100 * (1 - memory["MemAvailable"] / memory["MemTotal"])

# /proc/uptime: seconds since boot; /proc/loadavg: 1, 5 and 15 minute load
uptime = {host: float(out.split()[0]) / 86400 for host, out in outputs("cat /proc/uptime").items()}
load = {host: float(out.split()[0]) for host, out in outputs("cat /proc/loadavg").items()}
python = {host: out.split()[-1] for host, out in outputs("python3 --version").items()}

# dpkg-query: "package<TAB>version" per installed package
packages = pd.DataFrame(
    [
        {"host": host, "package": line.split("\\t")[0], "version": line.split("\\t")[1]}
        for host, out in outputs("dpkg-query").items()
        for line in out.splitlines()
        if "\\t" in line
    ],
    columns=["host", "package", "version"],
)
disks
""",
    ),
    (
        "markdown",
        """
## 6. Filter and group

One row per host, then the file systems above a threshold, then package
versions side by side (a missing package shows as NaN).
""",
    ),
    (
        "code",
        """
summary = pd.DataFrame(
    {
        "uptime_days": pd.Series(uptime),
        "load_1min": pd.Series(load),
        "python": pd.Series(python),
        "memory_used_pct": memory.set_index("host")["used_pct"],
        "disk_size_gib": disks.groupby("host")["size_gib"].sum(),
        "disk_used_gib": disks.groupby("host")["used_gib"].sum(),
        "fullest_mount_pct": disks.groupby("host")["used_pct"].max(),
    }
).rename_axis("host")
summary.round(2)
""",
    ),
    (
        "code",
        """
THRESHOLD_PCT = 10
busy = disks[disks["used_pct"] >= THRESHOLD_PCT].sort_values("used_pct", ascending=False)
print(f"{len(busy)} file system(s) at or above {THRESHOLD_PCT}% used")
busy.round(1)
""",
    ),
    (
        "code",
        """
versions = packages.pivot_table(index="package", columns="host", values="version", aggfunc="first")
versions.reindex(PACKAGES)
""",
    ),
    (
        "markdown",
        """
## 7. A chart

Disk and memory use per host, saved as a PNG (and shown here).
""",
    ),
    (
        "code",
        """
fig, (disk_axes, memory_axes) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")

per_mount = disks.pivot_table(index="mount", columns="host", values="used_pct", aggfunc="max")
per_mount.plot.barh(ax=disk_axes)
disk_axes.set_xlabel("used %")
disk_axes.set_xlim(0, 100)
disk_axes.set_title("Disk use per mount")

memory.set_index("host")["used_pct"].plot.bar(ax=memory_axes, color="tab:orange", rot=0)
memory_axes.set_ylabel("used %")
memory_axes.set_ylim(0, 100)
memory_axes.set_title("Memory in use")

chart = OUT / "hosts-overview.png"
fig.savefig(chart, dpi=100)
plt.close(fig)
display(Image(filename=str(chart)))
""",
    ),
    (
        "markdown",
        """
## 8. Export

CSV for spreadsheets, Parquet (typed, compact) for the next analysis.
""",
    ),
    (
        "code",
        """
results.to_csv(OUT / "results.csv", index=False)
results.to_parquet(OUT / "results.parquet", index=False)
disks.to_parquet(OUT / "disks.parquet", index=False)
summary.to_csv(OUT / "summary.csv")

assert pd.read_parquet(OUT / "results.parquet").equals(results)
for path in sorted(OUT.iterdir()):
    print(f"{path.name:<20} {path.stat().st_size:>8} bytes")
""",
    ),
    (
        "markdown",
        """
## 9. Clean up

Close this kernel's connections to the servers (`run_commands` keeps one
per server for the kernel's event loop, so later cells reuse it), then stop
the local servers if this notebook started any.
""",
    ),
    (
        "code",
        """
from remsvc_core.channels import close_channels

await close_channels()
for server in local_servers:
    server.stop()
local_servers = []
""",
    ),
]


def build() -> Any:
    """The notebook as an nbformat object, with stable cell ids and no outputs."""
    cells = []
    for index, (kind, source) in enumerate(CELLS, start=1):
        text = source.strip("\n")
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cells.append(make(text, id=f"walkthrough-{index:02d}"))
    notebook = nbformat.v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.validate(notebook)
    return notebook


def render() -> str:
    return nbformat.writes(build()) + "\n"


def main() -> int:
    NOTEBOOK.write_text(render(), encoding="utf-8")
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
