"""Load a benchmark script (benchmarks/*.py, not a package) as a module for its tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the scripts import benchmarks/core.py by name
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fe() -> ModuleType:
    """benchmarks/feedback_efficiency.py."""
    return _load("feedback_efficiency")


@pytest.fixture(scope="module")
def peer() -> ModuleType:
    """benchmarks/peer_imitation.py."""
    return _load("peer_imitation")


@pytest.fixture(scope="module")
def overhead() -> ModuleType:
    """benchmarks/overhead.py."""
    return _load("overhead")


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    """benchmarks/reward_probe.py."""
    return _load("reward_probe")


@pytest.fixture(scope="module")
def engine() -> ModuleType:
    """benchmarks/engine_speed.py."""
    return _load("engine_speed")


@pytest.fixture(scope="module")
def off() -> ModuleType:
    """benchmarks/offline.py."""
    return _load("offline")


@pytest.fixture(scope="module")
def lmo() -> ModuleType:
    """benchmarks/lm_overoptimization.py."""
    return _load("lm_overoptimization")


@pytest.fixture(scope="module")
def fidelity() -> ModuleType:
    """benchmarks/proxy_fidelity.py."""
    return _load("proxy_fidelity")


@pytest.fixture(scope="module")
def update_speed() -> ModuleType:
    """benchmarks/offline_update_speed.py."""
    return _load("offline_update_speed")


@pytest.fixture(scope="module")
def core() -> ModuleType:
    """benchmarks/core.py, imported by name as the other scripts import it (its dataclasses
    need it in ``sys.modules``)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("core")


@pytest.fixture(scope="module")
def d3x() -> ModuleType:
    """benchmarks/d3rlpy_crosscheck.py."""
    return _load("d3rlpy_crosscheck")
