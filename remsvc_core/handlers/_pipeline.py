"""Turning a handler spec into a :class:`ResultPipeline` and running it.

A spec is plain JSON so it can be templated by Airflow and stored: ``None`` (the
default, ``"sorted"``), ``"name"``, ``"package:name"``, ``{"name": ..., "options":
{...}}``, or a list of those (a pipeline, applied left to right). A Python callable
is accepted anywhere a step is, for code written for the original provider. A string
holding JSON text (``'["rc_filter", "dataframe"]'``) is parsed first, because a
templated operator argument arrives as a string.

Everything is checked here, at resolve time: unknown names, packages that fail to
import, unknown or bad options. Running the pipeline can then only fail on the data.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from remsvc_core.errors import HandlerError
from remsvc_core.handlers._options import check_options
from remsvc_core.handlers._registry import HandlerInfo, find_candidate, info_of, load_candidate
from remsvc_core.handlers._rows import (
    ResultRows,
    as_ints,
    as_tid,
    describe_value,
    mapping_rows,
    mapping_tids,
)
from remsvc_core.handlers._sharing import handed_out, takes_result_rows

DEFAULT_HANDLER = "sorted"
DEFAULT_ACCEPTED_RCS: frozenset[int] = frozenset({0})
_STEP_KEYS = ("name", "options")


@dataclass(frozen=True)
class PipelineStep:
    """One resolved step: the handler object and the options it is called with.

    ``info`` describes the installed handler; it is None for a Python callable.
    """

    name: str
    handler: Callable[..., Any]
    options: dict[str, Any] = field(default_factory=dict)
    info: HandlerInfo | None = None

    def spec(self) -> Any:
        """This step as plain JSON: its name, or ``{"name", "options"}``."""
        if self.info is None:
            qualname = getattr(self.handler, "__qualname__", type(self.handler).__qualname__)
            module = getattr(self.handler, "__module__", None) or "?"
            return {"callable": f"{module}:{qualname}"}
        if self.options:
            return {"name": self.name, "options": dict(self.options)}
        return self.name

    def accepted_rcs(self) -> frozenset[int] | None:
        hook = getattr(self.handler, "accepted_rcs", None)
        if not callable(hook):
            return None
        try:
            codes = hook(**self.options)
        except (TypeError, ValueError) as exc:
            raise HandlerError(f"result handler {self.name!r}: bad options: {exc}") from exc
        if codes is None:
            return None
        try:
            accepted = frozenset(_exit_code(code) for code in codes)
        except (TypeError, ValueError) as exc:
            raise HandlerError(
                f"result handler {self.name!r}: accepted_rcs() must give integer exit codes, "
                f"got {codes!r}"
            ) from exc
        if not accepted:
            raise HandlerError(
                f"result handler {self.name!r} accepts no exit code at all; every command "
                "would fail. Give at least one code."
            )
        return accepted

    def result_hook(self) -> object | None:
        make = getattr(self.handler, "result_hook", None)
        if not callable(make):
            return None
        try:
            hook: object | None = make(**self.options)
        except Exception as exc:
            raise HandlerError(
                f"result handler {self.name!r} could not make its fail-fast hook: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return hook


class ResultPipeline:
    """Resolved result handlers, applied left to right to a stream's raw results.

    The order callers follow (the operator, ``remsvc run``): the stream ends; the
    success check runs over *all* raw results with :attr:`accepted_rcs` (plus missing
    tids and the stream status); :meth:`apply` shapes the results into the value that
    is returned or pushed; only then, if the check failed, the task or command fails.
    """

    def __init__(self, steps: Iterable[PipelineStep]) -> None:
        self.steps: tuple[PipelineStep, ...] = tuple(steps)
        if not self.steps:
            raise HandlerError("a result pipeline needs at least one handler")
        self._accepted = self._combine_accepted()

    def __repr__(self) -> str:
        return f"ResultPipeline({self.spec!r})"

    @property
    def names(self) -> list[str]:
        """The step names, in order."""
        return [step.name for step in self.steps]

    @property
    def spec(self) -> list[Any]:
        """The pipeline as plain JSON (a list of steps); ``resolve_handler(p.spec)``
        gives the same pipeline unless a step is a Python callable."""
        return [step.spec() for step in self.steps]

    @property
    def accepted_rcs(self) -> frozenset[int]:
        """Exit codes that count as success; ``{0}`` unless a step says otherwise."""
        return self._accepted

    def is_success(self, result: Mapping[str, Any] | Any) -> bool:
        """Whether one result (a result dict or a CommandResult) has an accepted exit code."""
        rc = result.get("rc") if isinstance(result, Mapping) else getattr(result, "rc", None)
        code = as_tid(rc)  # the same int-or-numeric-string reading as tids
        return code is not None and code in self._accepted

    def failed_tids(self, raw_results: Mapping[Any, Any]) -> list[int]:
        """Tids whose exit code is not accepted, in command order."""
        rows = mapping_rows(raw_results, handler="the success check")
        accepted = self._accepted
        codes = as_ints(rows.column("rc"))
        tids = mapping_tids(rows)
        return [tid for tid, code in zip(tids, codes, strict=True) if code not in accepted]

    def result_hooks(self) -> list[object]:
        """Fresh pluggy plugin objects for the fail-fast checks of this pipeline's
        steps; pass them to the engine as ``hooks=`` for one stream."""
        return [hook for hook in (step.result_hook() for step in self.steps) if hook is not None]

    def apply(self, raw_results: Any) -> Any:
        """Run every step, left to right, and return the last step's value.

        ``raw_results`` is the ``{tid: result_dict}`` mapping (integer or string tids;
        the steps see it ordered by integer tid), a
        :class:`~remsvc_core.results.StreamOutcome`, a
        :class:`~remsvc_core.fleet.FleetOutcome` (the steps see its results, each with
        a ``host``), or a list of result dicts.
        A step that fails raises :class:`HandlerError` naming the step, what it was
        given and which step produced that.

        The caller's results are never changed, and the value returned shares no dict
        with them. The mapping is read once, in place; steps marked
        :func:`~remsvc_core.handlers.reads_result_rows` (the built-ins) pass rows on
        without copying, and a row is copied only before a step that is not marked
        and on the way out (see :mod:`remsvc_core.handlers._sharing`).
        """
        value = _initial_value(raw_results)
        source = "the raw results"
        total = len(self.steps)
        for position, step in enumerate(self.steps, start=1):
            given = value if takes_result_rows(step.handler) else handed_out(value)
            try:
                value = step.handler(given, **step.options)
            except Exception as exc:
                raise HandlerError(
                    f"result handler step {position} of {total} ({step.name!r}) failed on "
                    f"{describe_value(given)} from {source}: {exc}"
                ) from exc
            source = f"step {position} ({step.name!r})"
        return handed_out(value)

    def _combine_accepted(self) -> frozenset[int]:
        declared = [
            (step, codes) for step in self.steps if (codes := step.accepted_rcs()) is not None
        ]
        if not declared:
            return DEFAULT_ACCEPTED_RCS
        first_step, first = declared[0]
        for step, codes in declared[1:]:
            if codes != first:
                raise HandlerError(
                    f"result handlers {first_step.name!r} and {step.name!r} disagree on which "
                    f"exit codes count as success ({sorted(first)} vs {sorted(codes)}); "
                    "declare them in one step"
                )
        return first


def resolve_handler(spec: Any = None) -> ResultPipeline:
    """Build the pipeline ``spec`` describes; every name, package and option is checked.

    Raises :class:`~remsvc_core.errors.HandlerNotFoundError` for an unknown name (the
    message lists the installed ones) and :class:`~remsvc_core.errors.HandlerError`
    for anything else wrong with the spec.
    """
    if isinstance(spec, ResultPipeline):
        return spec
    return ResultPipeline(_step(item, index) for index, item in enumerate(_step_items(spec)))


def _step_items(spec: Any) -> list[Any]:
    if spec is None:
        return [DEFAULT_HANDLER]
    if isinstance(spec, str):
        text = spec.strip()
        if text[:1] in ("[", "{"):
            return _step_items(_parse_spec_text(text))
        return [spec]
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise HandlerError(
                "the result handler list is empty; name at least one handler, "
                "or leave it unset for the default ('sorted')"
            )
        return list(spec)
    return [spec]


def _parse_spec_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        error = exc
    # A Jinja-rendered Python list or dict ("['rc_filter', 'dataframe']") arrives as
    # its repr; literal_eval reads that and nothing else (no names, no calls).
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise HandlerError(
            f"result handler spec {text!r} looks like JSON but does not parse: {error}"
        ) from error
    if not isinstance(value, (list, tuple, dict)):
        raise HandlerError(f"result handler spec {text!r} is not a list or an object")
    return value


def _step(item: Any, index: int) -> PipelineStep:
    if isinstance(item, str):
        return _named_step(item, {}, index)
    if isinstance(item, Mapping):
        unknown = sorted(str(key) for key in item if key not in _STEP_KEYS)
        if unknown or "name" not in item:
            raise HandlerError(
                f"result handler step {index + 1} must look like "
                f'{{"name": "rc_filter", "options": {{...}}}}; got {dict(item)!r}'
            )
        name = item["name"]
        if not isinstance(name, str):
            raise HandlerError(
                f"result handler step {index + 1}: 'name' must be a string, "
                f"got {type(name).__name__}"
            )
        return _named_step(name, item.get("options"), index)
    if callable(item):
        name = getattr(item, "__name__", None) or type(item).__name__
        return PipelineStep(name=name, handler=item)
    raise HandlerError(
        f"result handler step {index + 1} is {describe_value(item)}; give a handler name, "
        f'{{"name": ..., "options": {{...}}}}, a list of those, or a callable'
    )


def _named_step(name: str, options: Any, index: int) -> PipelineStep:
    name = name.strip()
    if not name:
        raise HandlerError(f"result handler step {index + 1} has an empty name")
    cand = find_candidate(name)
    handler = load_candidate(cand)
    checked = check_options(cand.name, handler, options)
    # Keep the qualified form in the spec only if the caller used it.
    shown = name if ":" in name else cand.name
    return PipelineStep(name=shown, handler=handler, options=checked, info=info_of(cand))


def _initial_value(raw: Any) -> Any:
    # The caller's mapping is read in place (shared); a StreamOutcome's is built
    # fresh for this call, so the pipeline owns its dicts. Anything else goes to
    # the first step as it is, as it always did.
    if isinstance(raw, Mapping):
        return mapping_rows(raw)
    raw_results = getattr(raw, "raw_results", None)
    if callable(raw_results):  # a StreamOutcome, or a FleetOutcome (a list of rows)
        fresh = raw_results()
        if isinstance(fresh, Mapping):
            return mapping_rows(fresh, shared=False)
        return ResultRows.fresh(fresh) if isinstance(fresh, list) else fresh
    return raw


def _exit_code(code: object) -> int:
    value = as_tid(code)
    if value is None:
        raise TypeError(f"{code!r} is not an exit code")
    return value
