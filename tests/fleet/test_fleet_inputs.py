"""What a fan-out accepts before it sends anything: targets, limits, batch keys, and
how host lists are written short."""

from __future__ import annotations

import re
from typing import Any

import pytest

from remsvc_core.errors import SettingsError
from remsvc_core.extensions import check_batch_key
from remsvc_core.fleet import FleetTarget, fleet_limits, fleet_targets, host_batch_key
from remsvc_core.fleet.budget import check_host_count
from remsvc_core.fleet.targets import default_label
from remsvc_core.hostlist import RANGE_DASH as D, compress_hosts
from remsvc_core.settings import ChannelSettings

A = ChannelSettings(target="web1.example.com:50051")
B = ChannelSettings(target="127.0.0.2:6000")


def test_every_target_form_gives_labelled_targets() -> None:
    assert fleet_targets([A, B]) == [
        FleetTarget("web1.example.com", A),
        FleetTarget("127.0.0.2:6000", B),
    ]
    assert [t.host for t in fleet_targets({"web1": A, "db1": "remsvc://db1:50051"})] == [
        "web1",
        "db1",
    ]
    uri = fleet_targets([("db", "remsvc://db.example.com:7000?use_ssl=true")])[0]
    assert (uri.host, uri.settings.target, uri.settings.use_tls) == (
        "db",
        "db.example.com:7000",
        True,
    )
    assert fleet_targets(["remsvc://[::1]:50051"])[0].host == "::1"
    assert default_label(ChannelSettings(target="[::1]:7000")) == "[::1]:7000"


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([], "targets is empty"),
        ("remsvc://one:50051", "collection of targets"),
        (A, "collection of targets"),
        ([A, A], "targets[0] and targets[1] are both labelled 'web1.example.com'"),
        ([("x", A), ("x", B)], "both labelled 'x'"),
        ([42], "targets[0]: int is not a target"),
        (["db1:50051"], "targets[0]: connection URI must start with remsvc://"),
        ([("", A)], "a host label must be a non-empty string"),
        ([("a\nb", A)], "control characters"),
        ([("x" * 201, A)], "at most 200"),
    ],
)
def test_bad_targets_are_refused_naming_the_entry(targets: Any, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        fleet_targets(targets)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("hosts", "options", "expected"),
    [
        (10, {}, (50, None, 10)),
        (10, {"max_errors": 3}, (50, 3, 10)),
        (25, {"max_errors": "10%"}, (50, 3, 25)),  # 2.5 rounds up
        (5, {"max_errors": "1%"}, (50, 1, 5)),  # never below one host
        (10, {"success_threshold": "90%"}, (50, None, 9)),  # no float residue
        (25, {"success_threshold": "90%"}, (50, None, 23)),
        (10, {"success_threshold": 4, "max_concurrency": "7"}, (7, None, 4)),
        (3, {"max_errors": " 100 % "}, (50, 3, 3)),
    ],
)
def test_limits_in_hosts(hosts: int, options: dict[str, Any], expected: tuple[Any, ...]) -> None:
    limits = fleet_limits(
        hosts,
        max_concurrency=options.get("max_concurrency", 50),
        max_errors=options.get("max_errors"),
        success_threshold=options.get("success_threshold"),
    )
    assert (limits.max_concurrency, limits.max_errors, limits.required) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be a whole number of hosts of at least 1"),
        ({"max_concurrency": True}, "max_concurrency must be"),
        ({"max_errors": 0}, "max_errors must be at least 1 host(s), got 0"),
        ({"max_errors": "0%"}, "above 0% and at most 100%"),
        ({"max_errors": "150%"}, "above 0% and at most 100%"),
        ({"max_errors": 0.5}, "write '50%'"),
        ({"max_errors": "many"}, "neither a number of hosts nor a percentage"),
        ({"success_threshold": 11}, "the run has only 10 host(s)"),
    ],
)
def test_bad_limits_say_what_to_write(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        fleet_limits(
            10,
            max_concurrency=options.get("max_concurrency", 50),
            max_errors=options.get("max_errors"),
            success_threshold=options.get("success_threshold"),
        )
    assert message in str(caught.value)


def test_the_form_of_a_count_is_checked_without_the_hosts() -> None:
    assert check_host_count("12%", "x", minimum=1) == 12.0
    assert check_host_count("12", "x", minimum=1) == 12
    assert check_host_count(None, "x", minimum=1) is None


def test_host_batch_keys_are_valid_distinct_and_stable() -> None:
    long_key = "airflow:" + "d" * 120 + ":try1:" + "a" * 16 + ":" + "b" * 24
    keys = {
        host_batch_key(fleet, host)
        for fleet in ("fleet:1", long_key)
        for host in ("web1", "web 1", "web1.example.com:50051", "ü" * 300)
    }
    assert len(keys) == 8
    for key in keys:
        assert check_batch_key(key) == key
        assert len(key) <= 200
    assert host_batch_key("fleet:1", "web1") == host_batch_key("fleet:1", "web1")
    assert re.fullmatch(r"fleet:1:host:web1:[0-9a-f]{16}", host_batch_key("fleet:1", "web1"))


@pytest.mark.parametrize(
    ("hosts", "written"),
    [
        ([f"web{i}" for i in range(1, 98)], f"web1{D}web97"),
        (["web100", "web98", "web99"], f"web98{D}web100"),
        (["web1", "web2", "web4"], "web1, web2, web4"),
        (["db2", "lb", "db1", "db3", "web7"], f"db1{D}db3, lb, web7"),
        (["web08", "web09", "web10"], f"web08{D}web10"),
        (["web9", "web08", "web10"], "web08, web9, web10"),
        (["r1-n1", "r1-n2", "r1-n3", "r2-n1"], f"r1-n1{D}r1-n3, r2-n1"),
        ([f"127.0.0.{i}:50051" for i in range(2, 6)], f"127.0.0.2:50051{D}127.0.0.5:50051"),
        (["web1", "web1"], "web1"),
        ([], ""),
    ],
)
def test_host_lists_are_written_short(hosts: list[str], written: str) -> None:
    assert compress_hosts(hosts) == written
