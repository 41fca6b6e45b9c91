"""The participant kit stands alone: importing it loads nothing of the orchestrator.

A participant service installs the kit without the engine, so `import participants.kit`
must not reach the orchestrator package, its web and terminal dependencies, or the
example services. Each check imports in a fresh interpreter (this one has long since
imported all of them) and lists what came along.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

FORBIDDEN_PACKAGES = ("orchestrator", "aiohttp", "aiohttp_sse", "rich", "opentelemetry")
"""The engine, its web console, its terminal rendering and its telemetry."""


def loaded_after_import(module: str) -> list[str]:
    """The forbidden packages and example modules in sys.modules after importing `module`."""
    script = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"forbidden = {FORBIDDEN_PACKAGES!r}\n"
        "print(json.dumps(sorted(\n"
        "    name for name in sys.modules\n"
        "    if name.split('.')[0] in forbidden\n"
        "    or (name.startswith('participants.') and not name.startswith('participants.kit'))\n"
        ")))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize(
    "module",
    ["participants.kit", "participants.kit.auth", "participants.kit.tls"],
)
def test_importing_the_kit_loads_no_orchestrator_module_nor_aiohttp_nor_rich(module):
    assert loaded_after_import(module) == []


def test_the_check_sees_the_examples_pulling_the_orchestrator_in():
    """The probe itself works: the example services' server uses the orchestrator's
    telemetry, and is listed."""
    loaded = loaded_after_import("participants.common.server")
    assert "orchestrator.telemetry.interceptors" in loaded
    assert "participants.common.server" in loaded


def test_the_kit_exports_no_test_hooks():
    import participants.kit as kit

    hooks = {"FAILPOINT_VAR", "FAILPOINT_EXIT_CODE", "now", "fingerprint"}
    assert hooks.isdisjoint(kit.__all__)
    assert set(kit.__all__) <= set(dir(kit))
