"""The DSL's public face: `orchestrator.__all__` is exactly these names, each importable.

A name added to or dropped from the package's face is a change to what saga
definitions may import, so it shows up here (as Temporal's test_client_exports.py
pins its client's).
"""

from __future__ import annotations

import importlib

import pytest

import orchestrator

pytestmark = pytest.mark.unit

DSL_EXPORTS = [
    "AsyncCompletion",
    "Call",
    "Correlation",
    "LockPolicy",
    "Locks",
    "OnStuck",
    "OnTimeout",
    "Parallel",
    "RetryPolicy",
    "SagaDefinition",
    "Step",
    "StepContext",
    "TrackedStep",
    "tracked_saga",
]


def test_the_dsl_exports_exactly_its_names():
    assert sorted(orchestrator.__all__) == DSL_EXPORTS
    assert len(set(orchestrator.__all__)) == len(orchestrator.__all__)


@pytest.mark.parametrize("name", DSL_EXPORTS)
def test_each_dsl_name_imports_from_the_package(name):
    module = importlib.import_module("orchestrator")
    exported = getattr(module, name)
    assert exported.__module__.startswith("orchestrator.core."), exported


def test_a_star_import_gives_the_dsl_and_nothing_else():
    namespace: dict[str, object] = {}
    exec("from orchestrator import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == DSL_EXPORTS
