"""Resolving handler specs: names, pipelines, options, and the errors promised for
unknown names, broken packages and names two packages claim."""

from __future__ import annotations

import json
from typing import Any

import pytest

from remsvc_core.errors import HandlerError, HandlerNotFoundError
from remsvc_core.handlers import (
    HandlerConflictWarning,
    HandlerInfo,
    ResultPipeline,
    list_handlers,
    refresh_handlers,
    resolve_handler,
    result_handler,
)
from remsvc_handlers.rc_filter import rc_filter
from remsvc_handlers.sorted import sorted_results

BUILTINS = {"sorted", "dataframe", "rc_filter", "verify_hash", "grouped"}


def test_default_is_sorted() -> None:
    pipeline = resolve_handler(None)
    assert pipeline.names == ["sorted"]
    assert pipeline.spec == ["sorted"]
    assert pipeline.accepted_rcs == frozenset({0})
    assert pipeline.steps[0].handler is sorted_results


def test_every_spec_form_resolves_to_the_same_json_spec() -> None:
    spec = ["rc_filter", {"name": "verify_hash", "options": {"on_mismatch": "mark"}}, "dataframe"]
    pipeline = resolve_handler(spec)
    assert pipeline.names == ["rc_filter", "verify_hash", "dataframe"]
    assert pipeline.spec == spec
    # the spec is plain JSON, so it survives templating and storage...
    assert json.loads(json.dumps(pipeline.spec)) == spec
    # ...and resolving it again, or its JSON text (a templated string), is equivalent
    assert resolve_handler(pipeline.spec).spec == spec
    assert resolve_handler(json.dumps(spec)).spec == spec
    assert resolve_handler(tuple(spec)).spec == spec
    assert resolve_handler(pipeline) is pipeline


def test_jinja_rendered_python_list_is_read() -> None:
    # "{{ params.handlers }}" renders a Python list as its repr, not as JSON
    rendered = "['rc_filter', {'name': 'verify_hash', 'options': {'on_mismatch': 'mark'}}]"
    assert resolve_handler(rendered).names == ["rc_filter", "verify_hash"]
    with pytest.raises(HandlerError, match="looks like JSON but does not parse"):
        resolve_handler("[__import__('os')]")


def test_single_name_with_options() -> None:
    pipeline = resolve_handler({"name": "rc_filter", "options": {"accept": [0, 1]}})
    assert pipeline.names == ["rc_filter"]
    assert pipeline.accepted_rcs == frozenset({0, 1})
    assert pipeline.is_success({"rc": 1})
    assert not pipeline.is_success({"rc": 2})
    assert pipeline.spec == [{"name": "rc_filter", "options": {"accept": [0, 1]}}]


def test_name_without_options_key_and_null_options() -> None:
    assert resolve_handler({"name": "sorted"}).spec == ["sorted"]
    assert resolve_handler({"name": "sorted", "options": None}).spec == ["sorted"]


def test_a_plain_callable_still_works_and_gets_int_tids() -> None:
    seen: list[Any] = []

    def seed_style_handler(results: dict[int, dict[str, Any]]) -> list[int]:
        seen.append(results)
        return sorted(results)  # written for int keys, as the original provider gave

    pipeline = resolve_handler(seed_style_handler)
    assert pipeline.names == ["seed_style_handler"]
    assert pipeline.spec[0]["callable"].endswith("seed_style_handler")
    raw = {"10": {"tid": 10, "rc": 0}, "2": {"tid": 2, "rc": 0}, "1": {"tid": 1, "rc": 0}}
    assert pipeline.apply(raw) == [1, 2, 10]
    assert list(seen[0]) == [1, 2, 10]


def test_callables_mix_with_names_in_a_pipeline() -> None:
    pipeline = resolve_handler(["sorted", lambda rows: [r["tid"] for r in rows]])
    assert pipeline.apply({"3": {"rc": 0}, "1": {"rc": 0}}) == [1, 3]


def test_callable_attributes_are_honoured() -> None:
    @result_handler(accepted_rcs=lambda: [0, 3], description="custom")
    def custom(results: Any) -> Any:
        return results

    pipeline = resolve_handler(custom)
    assert pipeline.accepted_rcs == frozenset({0, 3})


def test_unknown_name_lists_installed_handlers(fresh_registry: Any) -> None:
    with pytest.raises(HandlerNotFoundError) as caught:
        resolve_handler("no_such_handler")
    message = str(caught.value)
    assert "'no_such_handler'" in message
    for name in BUILTINS:
        assert name in message
    assert isinstance(caught.value, LookupError)
    assert isinstance(caught.value, HandlerError)


def test_unknown_name_suggests_a_close_one() -> None:
    with pytest.raises(HandlerNotFoundError, match="Did you mean 'dataframe'"):
        resolve_handler("datafram")


def test_unknown_name_inside_a_pipeline() -> None:
    with pytest.raises(HandlerNotFoundError, match="'nope'"):
        resolve_handler(["sorted", {"name": "nope"}])


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ([], "list is empty"),
        ("", "empty name"),
        ("   ", "empty name"),
        (42, "value of type int"),
        ([{"options": {}}], 'must look like {"name"'),
        ([{"name": "sorted", "opts": {}}], 'must look like {"name"'),
        ({"name": 7}, "'name' must be a string"),
        ({"name": "rc_filter", "options": [0, 1]}, "must be a JSON object"),
        ("[not json", "looks like JSON but does not parse"),
    ],
)
def test_malformed_specs_name_the_problem(spec: Any, fragment: str) -> None:
    with pytest.raises(HandlerError) as caught:
        resolve_handler(spec)
    assert fragment in str(caught.value)


def test_unknown_option_names_handler_and_accepted_options() -> None:
    with pytest.raises(HandlerError) as caught:
        resolve_handler({"name": "rc_filter", "options": {"acept": [0, 1]}})
    message = str(caught.value)
    assert "'rc_filter'" in message
    assert "'acept'" in message
    assert "accept, keep" in message


def test_option_to_a_handler_without_options() -> None:
    with pytest.raises(HandlerError, match="'sorted' has no option 'reverse'; it takes no options"):
        resolve_handler({"name": "sorted", "options": {"reverse": True}})


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"keep": "some"}, "keep='some' is not one of"),
        ({"accept": "0"}, "accept must be a list of integer exit codes"),
        ({"accept": []}, "accept is empty"),
        ({"accept": [0, "x"]}, "'x' is not one"),
        ({"keep": [1, None]}, "None is not one"),
    ],
)
def test_bad_option_values_fail_at_resolve_time(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(HandlerError) as caught:
        resolve_handler({"name": "rc_filter", "options": options})
    assert "'rc_filter'" in str(caught.value)
    assert fragment in str(caught.value)


def test_verify_hash_option_values_are_checked() -> None:
    with pytest.raises(HandlerError, match="on_mismatch='ignore' is not one of 'fail', 'mark'"):
        resolve_handler({"name": "verify_hash", "options": {"on_mismatch": "ignore"}})


def test_steps_that_disagree_on_success_are_refused() -> None:
    with pytest.raises(HandlerError, match="disagree on which exit codes count as success"):
        resolve_handler(
            [
                {"name": "rc_filter", "options": {"accept": [0, 1]}},
                {"name": "rc_filter", "options": {"accept": [0]}},
            ]
        )


def test_list_handlers_describes_every_builtin() -> None:
    infos = {info.name: info for info in list_handlers()}
    assert set(infos) >= BUILTINS
    for name in BUILTINS:
        info = infos[name]
        assert isinstance(info, HandlerInfo)
        assert info.package == "airflow-provider-remsvc"
        assert info.builtin
        assert info.active
        assert info.error is None
        assert info.version
        assert info.description
        assert "\n" not in info.description
        assert info.entry_point.startswith("remsvc_handlers.")
        assert info.qualified_name == f"airflow-provider-remsvc:{name}"
    assert infos["rc_filter"].description == rc_filter.__doc__.strip().splitlines()[0]


def test_qualified_builtin_name() -> None:
    pipeline = resolve_handler("airflow-provider-remsvc:sorted")
    assert pipeline.steps[0].handler is sorted_results
    assert pipeline.spec == ["airflow-provider-remsvc:sorted"]
    # the distribution name is compared normalized, as pip does
    assert resolve_handler("Airflow_Provider_Remsvc:sorted").steps[0].handler is sorted_results


def test_qualified_name_with_wrong_package() -> None:
    with pytest.raises(HandlerNotFoundError, match="'acme-nothing' provides no result handler"):
        resolve_handler("acme-nothing:sorted")


# --- plugins from real (temporary) distributions on sys.path ------------------------

GOOD_MODULE = '''
def shout(results, *, suffix="!"):
    """Upper-cases every stdout."""
    return [r["out"].upper() + suffix for r in results.values()]
'''


def test_package_installed_at_runtime_is_found_without_restart(fake_dists: Any) -> None:
    resolve_handler("sorted")  # discovery has run and is cached
    fake_dists.add("late-handlers", {"shout": "late_mod:shout"}, {"late_mod": GOOD_MODULE})
    # add() refreshed; prove the unknown-name path refreshes on its own, too
    refresh_handlers()
    pipeline = resolve_handler({"name": "shout", "options": {"suffix": "?"}})
    assert pipeline.apply({"1": {"tid": 1, "out": "hi"}}) == ["HI?"]
    info = next(i for i in list_handlers() if i.name == "shout")
    assert (info.package, info.version, info.builtin) == ("late-handlers", "0.1.0", False)
    assert info.description == "Upper-cases every stdout."


def test_unknown_name_lookup_refreshes_discovery(fake_dists: Any) -> None:
    resolve_handler("sorted")
    # write a distribution behind the registry's back: no refresh_handlers() call
    info = fake_dists.root / "quiet_handlers-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: quiet-handlers\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[remsvc.handlers]\nquiet = quiet_mod:shout\n")
    (fake_dists.root / "quiet_mod.py").write_text(GOOD_MODULE)
    fake_dists.modules.append("quiet_mod")
    assert resolve_handler("quiet").names == ["quiet"]


def test_broken_plugin_names_its_package_and_the_import_error(fake_dists: Any) -> None:
    fake_dists.add(
        "broken-handlers",
        {"broken": "broken_mod:handler"},
        {"broken_mod": "import module_that_is_not_installed_anywhere\n"},
        version="2.3.4",
    )
    with pytest.raises(HandlerError) as caught:
        resolve_handler(["sorted", "broken"])
    message = str(caught.value)
    assert "'broken'" in message
    assert "broken-handlers 2.3.4" in message
    assert "ModuleNotFoundError" in message
    assert "module_that_is_not_installed_anywhere" in message
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)
    # listing still works and shows the failure instead of hiding it
    info = next(i for i in list_handlers() if i.name == "broken")
    assert info.error is not None
    assert "ModuleNotFoundError" in info.error
    assert info.description == ""
    # other handlers are unaffected
    assert resolve_handler("sorted").names == ["sorted"]


def test_entry_point_naming_a_missing_attribute(fake_dists: Any) -> None:
    fake_dists.add("typo-handlers", {"typo": "typo_mod:hanlder"}, {"typo_mod": GOOD_MODULE})
    with pytest.raises(HandlerError, match=r"typo-handlers 0.1.0.*AttributeError"):
        resolve_handler("typo")


def test_entry_point_that_is_not_callable(fake_dists: Any) -> None:
    fake_dists.add("const-handlers", {"const": "const_mod:VALUE"}, {"const_mod": "VALUE = 3\n"})
    with pytest.raises(HandlerError, match="is int, not a callable"):
        resolve_handler("const")


def test_handler_without_a_results_parameter(fake_dists: Any) -> None:
    source = "def bad(*, x=1):\n    return x\n"
    fake_dists.add("kwonly-handlers", {"kwonly": "kwonly_mod:bad"}, {"kwonly_mod": source})
    with pytest.raises(HandlerError, match="must take the results as its first positional"):
        resolve_handler("kwonly")


def test_required_option_left_out(fake_dists: Any) -> None:
    source = "def grep(results, *, pattern):\n    return results\n"
    fake_dists.add("req-handlers", {"grep_out": "req_mod:grep"}, {"req_mod": source})
    with pytest.raises(HandlerError, match="'grep_out' needs option\\(s\\) 'pattern'"):
        resolve_handler("grep_out")
    assert resolve_handler({"name": "grep_out", "options": {"pattern": "x"}}).names == ["grep_out"]


def test_duplicate_name_prefers_alphabetical_package_and_warns(fake_dists: Any) -> None:
    zeta = "def dup(results):\n    return 'zeta'\n"
    alpha = "def dup(results):\n    return 'alpha'\n"
    # zeta is written first, so discovery order alone would not give alpha
    fake_dists.add("zeta-handlers", {"dup": "zeta_mod:dup"}, {"zeta_mod": zeta})
    fake_dists.add("alpha-handlers", {"dup": "alpha_mod:dup"}, {"alpha_mod": alpha})
    with pytest.warns(HandlerConflictWarning) as record:
        pipeline = resolve_handler("dup")
    assert pipeline.apply({}) == "alpha"
    message = str(record[0].message)
    assert "alpha-handlers" in message
    assert "zeta-handlers" in message
    assert "'zeta-handlers:dup'" in message
    assert record[0].filename == __file__  # points at the caller, not at remsvc
    # the qualified form picks the other one explicitly, without a warning
    assert resolve_handler("zeta-handlers:dup").apply({}) == "zeta"
    infos = [i for i in list_handlers() if i.name == "dup"]
    assert [(i.package, i.active) for i in infos] == [
        ("alpha-handlers", True),
        ("zeta-handlers", False),
    ]


def test_duplicate_of_a_builtin_name_keeps_the_builtin(fake_dists: Any) -> None:
    source = "def hijack(results):\n    return 'not the built-in'\n"
    fake_dists.add("aaa-first-handlers", {"sorted": "hijack_mod:hijack"}, {"hijack_mod": source})
    with pytest.warns(HandlerConflictWarning, match="airflow-provider-remsvc"):
        pipeline = resolve_handler(None)
    assert pipeline.steps[0].handler is sorted_results
    assert resolve_handler("aaa-first-handlers:sorted").apply({}) == "not the built-in"


def test_pipeline_needs_a_step() -> None:
    with pytest.raises(HandlerError):
        ResultPipeline([])
