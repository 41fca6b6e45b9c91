"""The engine's pure core stays free of transport and database code.

Each check imports modules in a fresh interpreter (this one has long since
imported grpc and psycopg) and lists which of the forbidden packages came along.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

FORBIDDEN = ("grpc", "psycopg")


def loaded_after_import(modules: list[str]) -> list[str]:
    """The forbidden top-level packages in sys.modules after importing `modules` afresh."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize(
    "module",
    [
        "orchestrator.core.machine",
        "orchestrator.core.moves",
        "orchestrator.core.definition",
        "orchestrator.core.errors",
    ],
)
def test_the_pure_core_imports_neither_grpc_nor_psycopg(module):
    assert loaded_after_import([module]) == []


def test_the_check_sees_a_module_that_does_import_grpc():
    """The probe itself works: the servicer's error table does pull grpc in."""
    assert loaded_after_import(["orchestrator.api.status"]) == ["grpc"]
