"""What a stream produced: one :class:`CommandResult` per answered command, and a
:class:`StreamOutcome` that keeps everything that arrived, even when the stream failed.

Both convert to plain JSON-safe dicts and back, because they cross process
boundaries (an Airflow trigger event, XCom, ``remsvc run --output json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remsvc_core.commands import Command
from remsvc_core.verdict import OK, judge

RESULT_KEYS = ("tid", "rc", "out", "err", "hsh", "cmd")


USAGE_KEYS = ("wall_ms", "user_cpu_ms", "sys_cpu_ms", "max_rss_kb")


@dataclass(frozen=True, slots=True)
class Usage:
    """What one command cost, as the server measured it (``usage/1``).

    ``wall_ms`` from start to end; ``user_cpu_ms`` and ``sys_cpu_ms`` of the command's
    process and every descendant it waited for; ``max_rss_kb`` the largest resident
    set among them. None where the server did not report it; for ``max_rss_kb`` also
    where it could not be measured (a command smaller than the server that spawned it:
    see docs/protocol-extensions.md).
    """

    wall_ms: int | None = None
    user_cpu_ms: int | None = None
    sys_cpu_ms: int | None = None
    max_rss_kb: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {key: getattr(self, key) for key in USAGE_KEYS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Usage:
        return cls(**{key: _int_or_none(data.get(key)) for key in USAGE_KEYS})


#: What a result is when its server did not report usage although it was asked to.
UNREPORTED = Usage()


# Reprs stay short whatever the output: Python 3.11's asyncio.run() builds the repr
# of its main task's result when it ends (a failed enum lookup in signal.getsignal
# formats it), and a 64 MiB ``out`` made that a second of CPU and 64 MiB more memory.
_REPR_CHARS = 40


def _short(text: str) -> str:
    if len(text) <= _REPR_CHARS:
        return repr(text)
    return f"{text[:_REPR_CHARS]!r}... ({len(text)} chars)"


@dataclass(frozen=True, slots=True, repr=False)
class CommandResult:
    """The answer to one command.

    ``latency_s`` is measured by the client, from the moment the command was written
    to the moment its response was read. ``decode_replaced`` is true when the server
    sent ``out``/``err`` bytes that were not valid UTF-8 and the client replaced them.

    With protocol extensions (docs/protocol-extensions.md): ``replayed`` is true for
    a result the server sent again from its journal after a re-attach (the command
    did not run again), ``interrupted`` for one that was running when the server
    stopped; ``started_at``/``ended_at`` are the server's clock (Unix seconds);
    ``usage`` is set when it was asked for; ``out_file``/``err_file`` name the file a
    large output was spilled to (``out``/``err`` are then empty), with the SHA-256 of
    its bytes in ``out_sha256``/``err_sha256``.
    """

    tid: int
    rc: int
    out: str
    err: str
    hsh: str
    cmd: str
    latency_s: float = 0.0
    decode_replaced: bool = False
    replayed: bool = False
    interrupted: bool = False
    started_at: float | None = None
    ended_at: float | None = None
    usage: Usage | None = None
    out_file: str | None = None
    out_sha256: str | None = None
    err_file: str | None = None
    err_sha256: str | None = None

    def __repr__(self) -> str:
        spilled = "".join(
            f", {name}={path!r}"
            for name, path in (("out_file", self.out_file), ("err_file", self.err_file))
            if path is not None
        )
        return (
            f"CommandResult(tid={self.tid}, rc={self.rc}, out={_short(self.out)}, "
            f"err={_short(self.err)}, cmd={_short(self.cmd)}{spilled})"
        )

    def as_dict(self) -> dict[str, Any]:
        """The result as handlers receive it: the original provider's six keys, plus
        the usage keys when usage was asked for, and the file keys of a spilled stream.
        Nothing else: without extensions this is exactly 1.0.0's XCom item."""
        item: dict[str, Any] = {
            "tid": self.tid,
            "rc": self.rc,
            "out": self.out,
            "err": self.err,
            "hsh": self.hsh,
            "cmd": self.cmd,
        }
        if self.usage is not None:
            item.update(self.usage.as_dict())
        if self.out_file is not None:
            item.update(out_file=self.out_file, out_sha256=self.out_sha256)
        if self.err_file is not None:
            item.update(err_file=self.err_file, err_sha256=self.err_sha256)
        return item

    def to_json(self) -> dict[str, Any]:
        data = {
            **self.as_dict(),
            "latency_s": self.latency_s,
            "decode_replaced": self.decode_replaced,
        }
        # Only what is set: a trigger event carries every result, keep it small.
        for name in ("replayed", "interrupted"):
            if getattr(self, name):
                data[name] = True
        for name in ("started_at", "ended_at"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.usage is not None:
            data["usage"] = True  # the keys are in as_dict(); this says they were asked
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CommandResult:
        return cls(
            tid=int(data["tid"]),
            rc=int(data["rc"]),
            out=str(data.get("out", "")),
            err=str(data.get("err", "")),
            hsh=str(data.get("hsh", "")),
            cmd=str(data.get("cmd", "")),
            latency_s=float(data.get("latency_s", 0.0)),
            decode_replaced=bool(data.get("decode_replaced", False)),
            replayed=bool(data.get("replayed", False)),
            interrupted=bool(data.get("interrupted", False)),
            started_at=_float_or_none(data.get("started_at")),
            ended_at=_float_or_none(data.get("ended_at")),
            usage=Usage.from_json(data) if data.get("usage") else None,
            out_file=_str_or_none(data.get("out_file")),
            out_sha256=_str_or_none(data.get("out_sha256")),
            err_file=_str_or_none(data.get("err_file")),
            err_sha256=_str_or_none(data.get("err_sha256")),
        )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class UnexpectedResponse:
    """A response the client did not ask for: a repeated tid or one never sent.

    It is kept for diagnosis and never overwrites the first answer for a tid.
    """

    tid: int
    reason: str  # "duplicate", "unknown", or "malformed" (tid 0: bytes that are no RemResMsg)
    rc: int
    out: str
    err: str

    def to_json(self) -> dict[str, Any]:
        return {
            "tid": self.tid,
            "reason": self.reason,
            "rc": self.rc,
            "out": self.out,
            "err": self.err,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UnexpectedResponse:
        return cls(
            tid=int(data["tid"]),
            reason=str(data["reason"]),
            rc=int(data["rc"]),
            out=str(data.get("out", "")),
            err=str(data.get("err", "")),
        )


@dataclass(slots=True, repr=False)
class StreamOutcome:
    """Everything one stream produced, whether it ended well or not.

    ``status_code`` is the gRPC status name the stream ended with ("OK",
    "UNAVAILABLE", "DEADLINE_EXCEEDED", ...); ``status_details`` its message.
    """

    commands: list[Command]
    results: dict[int, CommandResult] = field(default_factory=dict)
    unexpected: list[UnexpectedResponse] = field(default_factory=list)
    status_code: str = OK
    status_details: str = ""
    elapsed_s: float = 0.0
    attempts: int = 1
    target: str = ""
    plugin_errors: list[str] = field(default_factory=list)
    #: The protocol extensions the server granted (docs/protocol-extensions.md).
    extensions: list[str] = field(default_factory=list)
    #: How many unexpected responses came; only the first few are in ``unexpected``.
    unexpected_count: int = 0

    def __repr__(self) -> str:
        return (
            f"StreamOutcome(target={self.target!r}, status_code={self.status_code!r}, "
            f"{len(self.results)} of {len(self.commands)} result(s), "
            f"missing_tids={self.missing_tids[:10]!r}, elapsed_s={self.elapsed_s:.3f})"
        )

    @property
    def missing_tids(self) -> list[int]:
        """Tids that were asked for and never answered, in command order."""
        return [c.tid for c in self.commands if c.tid not in self.results]

    @property
    def complete(self) -> bool:
        """The stream ended with OK and every command answered."""
        return self.status_code == OK and not self.missing_tids

    def ordered_results(self) -> list[CommandResult]:
        """Results in command order (by tid), whatever order they arrived in."""
        return [self.results[tid] for tid in sorted(self.results)]

    def raw_results(self) -> dict[int, dict[str, Any]]:
        """``{tid: result_dict}``: the mapping a result handler receives."""
        return {tid: self.results[tid].as_dict() for tid in sorted(self.results)}

    def describe_failure(self) -> str:
        """One paragraph saying how the stream fell short (exit codes aside); empty
        when it did not. The decision is :func:`remsvc_core.verdict.judge`'s."""
        return "; ".join(judge(self).stream_problems())

    def to_json(self) -> dict[str, Any]:
        return {
            "commands": [c.as_dict() for c in self.commands],
            "results": [r.to_json() for r in self.ordered_results()],
            "unexpected": [u.to_json() for u in self.unexpected],
            "missing_tids": self.missing_tids,
            "status_code": self.status_code,
            "status_details": self.status_details,
            "elapsed_s": self.elapsed_s,
            "attempts": self.attempts,
            "target": self.target,
            "plugin_errors": list(self.plugin_errors),
            **({"extensions": sorted(self.extensions)} if self.extensions else {}),
            # Only when from_json's default (the list's length) would be wrong.
            **(
                {"unexpected_count": self.unexpected_count}
                if self.unexpected_count != len(self.unexpected)
                else {}
            ),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StreamOutcome:
        commands = [
            Command(
                tid=int(c["tid"]),
                cmd=str(c["cmd"]),
                cmdtyp=int(c.get("cmdtyp", 0)),
                cmdusr=str(c.get("cmdusr", "")),
                src=str(c.get("src", "")),
            )
            for c in data.get("commands", [])
        ]
        results = [CommandResult.from_json(r) for r in data.get("results", [])]
        return cls(
            commands=commands,
            results={r.tid: r for r in results},
            unexpected=[UnexpectedResponse.from_json(u) for u in data.get("unexpected", [])],
            status_code=str(data.get("status_code", OK)),
            status_details=str(data.get("status_details", "")),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            attempts=int(data.get("attempts", 1)),
            target=str(data.get("target", "")),
            plugin_errors=[str(e) for e in data.get("plugin_errors", [])],
            extensions=[str(e) for e in data.get("extensions", [])],
            unexpected_count=int(data.get("unexpected_count", 0)),
        )
