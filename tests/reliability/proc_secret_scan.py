"""Search everything this process can read under /proc for secrets; print what was found.

``python3 proc_secret_scan.py LABEL=HEX ...`` (each secret hex-encoded, so that this
process's own command line does not hold it). Run as a command by the server under
test, it reads, for every process it may look at (itself excluded), every regular
file of /proc/<pid>/ and /proc/<pid>/task/<tid>/, the memory regions /proc/<pid>/maps
lists (through /proc/<pid>/mem), the regular files its descriptors point at, and the
files in its working directory. It prints one JSON object: for each label, where the
secret was seen (``{"environ": 1, "mem": 3}``), and how much was read.

Standard library only, bounded: at most ``FILE_CAP`` bytes of a file and
``MEM_CAP`` bytes of a process's memory.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time

FILE_CAP = 4 << 20
MEM_CAP = 512 << 20
# Files that are not content: huge binary indexes, or writing-only controls.
SKIPPED = frozenset({"pagemap", "clear_refs", "mem", "kpagecount", "kpageflags", "kpagecgroup"})
DEADLINE_S = 240.0


class Scan:
    def __init__(self, secrets: dict[str, bytes]) -> None:
        self.secrets = secrets
        self.hits: dict[str, dict[str, int]] = {label: {} for label in secrets}
        self.counts = {"pids": 0, "files": 0, "bytes": 0, "mem_regions": 0, "mem_bytes": 0}
        self.deadline = time.monotonic() + DEADLINE_S
        self.complete = True

    def check(self, place: str, data: bytes) -> None:
        for label, secret in self.secrets.items():
            found = data.count(secret)
            if found:
                self.hits[label][place] = self.hits[label].get(place, 0) + found

    def read(self, path: str, place: str) -> None:
        try:
            with open(path, "rb") as handle:
                data = handle.read(FILE_CAP)
        except OSError:
            return
        self.counts["files"] += 1
        self.counts["bytes"] += len(data)
        self.check(place, data)

    def process(self, base: str, prefix: str, *, threads: bool) -> None:
        try:
            names = os.listdir(base)
        except OSError:
            return
        for name in names:
            path = f"{base}/{name}"
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and name not in SKIPPED:
                self.read(path, prefix + name)
        self.memory(base, prefix + "mem")
        for directory in ("fd", "cwd"):
            self.linked_files(f"{base}/{directory}", prefix + directory + "/*")
        if threads:
            try:
                tids = os.listdir(f"{base}/task")
            except OSError:
                tids = []
            for tid in tids:
                self.process(f"{base}/task/{tid}", "task/*/", threads=False)

    def linked_files(self, directory: str, place: str) -> None:
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            path = f"{directory}/{name}"
            try:
                if stat.S_ISREG(os.stat(path).st_mode):  # never a pipe or a socket
                    self.read(path, place)
            except OSError:
                continue

    def memory(self, base: str, place: str) -> None:
        try:
            with open(f"{base}/maps") as handle:
                maps = handle.read().splitlines()
            mem = open(f"{base}/mem", "rb")  # noqa: SIM115 - closed below
        except OSError:
            return
        budget = MEM_CAP
        with mem:
            for line in maps:
                fields = line.split()
                if len(fields) < 2 or not fields[1].startswith("r"):
                    continue
                if fields[-1] in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                    continue
                low, high = (int(part, 16) for part in fields[0].split("-"))
                size = min(high - low, budget)
                if size <= 0:
                    break
                try:
                    mem.seek(low)
                    data = mem.read(size)
                except (OSError, ValueError, OverflowError):
                    continue
                budget -= len(data)
                self.counts["mem_regions"] += 1
                self.counts["mem_bytes"] += len(data)
                self.check(place, data)

    def run(self) -> None:
        own = str(os.getpid())
        for name in sorted(os.listdir("/proc")):
            if not name.isdigit() or name == own:
                continue
            if time.monotonic() > self.deadline:
                self.complete = False
                break
            self.counts["pids"] += 1
            self.process(f"/proc/{name}", "", threads=True)


def main() -> None:
    secrets = {}
    for argument in sys.argv[1:]:
        label, _, hexed = argument.partition("=")
        secrets[label] = bytes.fromhex(hexed)
    scan = Scan(secrets)
    scan.run()
    print(json.dumps({"hits": scan.hits, "counts": scan.counts, "complete": scan.complete}))


if __name__ == "__main__":
    main()
