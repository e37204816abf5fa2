"""Big outputs in Airflow: kept as files under the operator's ``output_dir``.

A command's output travels from the triggerer to the worker in the trigger event,
which Airflow stores in its database, and then to XCom: no place for a gigabyte. With
``output_dir`` set, an output larger than the engine's spill threshold (8 MiB) is
written to a file as it arrives instead (memory stays flat), and the result carries
only where the file is and the SHA-256 of its bytes (``out_file``/``out_sha256``,
``err_file``/``err_sha256``); ``out`` is empty.

``output_dir`` is either a local directory, which the triggerers and the workers must
share (an NFS mount) for a downstream task to read the files, or an object storage
URL (``s3://bucket/remsvc``, ``gs://...``, ``file:///...``) that Airflow's
``ObjectStoragePath`` opens with the credentials of its connection. Each task try gets
its own folder, ``<dag_id>/<run_id>/<task_id>[<map_index>]/try<n>``, so retries and
mapped instances never overwrite each other's files. Writing to object storage is
done once the stream has ended, from a temporary local file, off the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from remsvc_core.results import CommandResult, StreamOutcome

__all__ = ["check_output_dir", "is_url", "keep_outputs", "spill_dir_for", "task_folder"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")
log = logging.getLogger(__name__)


def check_output_dir(value: Any) -> str | None:
    """``value`` as an output directory, or an error message-worthy ``ValueError``."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"output_dir must be a directory path or an object storage URL such as "
            f"'s3://bucket/remsvc', got {value!r}"
        )
    return value.strip()


def is_url(output_dir: str) -> bool:
    return "://" in output_dir


def task_folder(output_dir: str | None, ti: Any) -> str | None:
    """The folder of one task try under ``output_dir`` (every part made path-safe).

    The operator computes it, on the worker, and hands it to the trigger: the folder
    does not depend on which triggerer runs the stream."""
    if output_dir is None:
        return None
    map_index = getattr(ti, "map_index", -1)
    mapped = f"[{map_index}]" if map_index is not None and int(map_index) >= 0 else ""
    parts = (str(ti.dag_id), str(ti.run_id), f"{ti.task_id}{mapped}", f"try{ti.try_number}")
    return "/".join([output_dir.rstrip("/"), *(_UNSAFE.sub("_", part) for part in parts)])


@contextlib.contextmanager
def spill_dir_for(folder: str | None) -> Iterator[str | None]:
    """Where the engine writes spilled outputs while the stream runs: the final folder
    when it is local; a temporary one (removed afterwards) for a URL."""
    if folder is None:
        yield None
        return
    if not is_url(folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        yield folder
        return
    temporary = tempfile.mkdtemp(prefix="remsvc-spill-")
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def keep_outputs(outcome: StreamOutcome, folder: str | None) -> StreamOutcome:
    """Put every spilled output in ``folder`` and name it there in the results.

    Blocking (it may upload): run it in a thread from async code. Local outputs are
    already in the folder and only their names change from temporary to final."""
    if folder is None or not any(_spilled(r) for r in outcome.results.values()):
        return outcome
    results = dict(outcome.results)
    for tid, result in outcome.results.items():
        if _spilled(result):
            results[tid] = _kept(result, folder)
    return replace(outcome, results=results)


def _spilled(result: CommandResult) -> bool:
    return result.out_file is not None or result.err_file is not None


def _kept(result: CommandResult, folder: str) -> CommandResult:
    out_file, err_file = result.out_file, result.err_file
    if out_file is not None:
        out_file = _put(out_file, folder, f"tid{result.tid}.stdout")
    if err_file is not None:
        err_file = _put(err_file, folder, f"tid{result.tid}.stderr")
    return replace(result, out_file=out_file, err_file=err_file)


def _put(local: str, folder: str, name: str) -> str:
    if not is_url(folder):
        final = Path(folder) / name
        os.replace(local, final)  # same folder: a rename, nothing copied
        return str(final)
    try:
        return _upload(local, folder, name)
    except Exception as exc:
        # The results are real: keep this one's output on this host rather than lose it
        # with the temporary folder, and say where it is.
        kept = Path(tempfile.mkdtemp(prefix="remsvc-output-")) / name
        shutil.move(local, kept)
        log.warning(
            "Could not write %s to %s (%s: %s); it is kept at %s on %s instead",
            name,
            folder,
            type(exc).__name__,
            exc,
            kept,
            socket.gethostname(),
        )
        return str(kept)


def _upload(local: str, folder: str, name: str) -> str:
    from airflow.sdk import ObjectStoragePath

    target = ObjectStoragePath(folder) / name
    # Object stores have no folders to make; a file:// store has, and does not make them.
    with contextlib.suppress(Exception):
        target.parent.mkdir(parents=True, exist_ok=True)
    with open(local, "rb") as source, target.open("wb") as sink:  # type: ignore[no-untyped-call]
        shutil.copyfileobj(source, sink, 1 << 20)
    os.unlink(local)
    return str(target)
