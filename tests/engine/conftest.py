"""Fixtures for the engine tests: a misbehaving server factory and recording plugins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_helpers import Recorder

from remsvc_core import plugins


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(autouse=True)
def _no_leftover_plugins() -> Iterator[None]:
    """Every test starts and ends with the process-wide plugins it found."""
    before = {info.name for info in plugins.list_plugins()}
    yield
    for info in plugins.list_plugins():
        if info.name not in before:
            plugins.unregister_plugin(info.name)
