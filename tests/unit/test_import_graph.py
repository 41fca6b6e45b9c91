"""The layers hold: each package under orchestrator/ imports only what its docstring
allows, and the pure core loads neither a transport nor a database driver.

Two checks. The static one reads every module's imports with `ast` (at module level
and inside functions alike: a lazy import is still an edge) and compares each edge
with the layer's rules. The runtime one imports the core in a fresh interpreter
(this one has long since imported grpc and psycopg) and lists which of the forbidden
third-party packages came along, through any chain of imports.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATOR = ROOT / "orchestrator"

TRANSPORTS_AND_DRIVERS = (
    "grpc",
    "psycopg",
    "psycopg_pool",
    "aiohttp",
    "aio_pika",
    "aiormq",
    "nats",
)

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "orchestrator.core": (
        "orchestrator.engine",
        "orchestrator.store",
        "orchestrator.api",
        "orchestrator.client",
        "orchestrator.cli",
        "orchestrator.web",
        "orchestrator.telemetry",
        "orchestrator.security",
        "orchestrator.examples",
        "orchestrator.server",
        "orchestrator.events",
        *TRANSPORTS_AND_DRIVERS,
    ),
    "orchestrator.engine": (
        "orchestrator.api",
        "orchestrator.cli",
        "orchestrator.web",
        "orchestrator.client",
        "orchestrator.server",
    ),
    "orchestrator.api": (
        "orchestrator.web",
        "orchestrator.cli",
        "orchestrator.client",
        "orchestrator.server",
    ),
    "orchestrator.telemetry": (
        "orchestrator.engine",
        "orchestrator.api",
        "orchestrator.store",
        "orchestrator.web",
        "orchestrator.cli",
        "orchestrator.client",
        "orchestrator.server",
    ),
    "orchestrator.client": (
        "orchestrator.engine",
        "orchestrator.store",
        "orchestrator.api",
        "orchestrator.cli",
        "orchestrator.web",
        "orchestrator.server",
    ),
    "orchestrator.events": (
        "orchestrator.engine",
        "orchestrator.api",
        "orchestrator.web",
        "orchestrator.cli",
        "orchestrator.client",
        "orchestrator.server",
    ),
    "orchestrator.web": (
        "orchestrator.engine",
        "orchestrator.store",
        "orchestrator.client",
        "orchestrator.cli",
        "orchestrator.server",
    ),
}
"""Per package, the modules and packages none of its modules may import."""


def module_name(path: Path, root: Path) -> str:
    """The dotted name of a module file under `root`'s parent."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """Every module a file imports, relative imports resolved, lazy ones included.
    `from a import b` counts as importing `a` and `a.b` (b may be a submodule)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(root: Path, rules: dict[str, tuple[str, ...]]) -> list[str]:
    """Each forbidden edge as "importer -> imported", for every module under `root`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        for layer, forbidden in rules.items():
            if importer != layer and not importer.startswith(layer + "."):
                continue
            for imported in sorted(imports_of(path, root)):
                if any(imported == bad or imported.startswith(bad + ".") for bad in forbidden):
                    found.append(f"{importer} -> {imported}")
    return found


def test_every_layer_imports_only_what_it_may():
    assert violations(ORCHESTRATOR, FORBIDDEN) == []


def test_every_layer_the_rules_name_exists():
    """A rule for a package that was renamed would pass by checking nothing."""
    for layer in FORBIDDEN:
        assert (ROOT / layer.replace(".", "/") / "__init__.py").is_file(), layer
        assert list((ROOT / layer.replace(".", "/")).rglob("*.py")), layer


def test_the_static_check_sees_a_forbidden_edge_however_it_is_written(tmp_path):
    """The probe: a core that imports the engine lazily, relatively, or grpc at the top."""
    core = tmp_path / "orchestrator" / "core"
    core.mkdir(parents=True)
    (tmp_path / "orchestrator" / "__init__.py").write_text("")
    (core / "__init__.py").write_text("")
    (core / "eager.py").write_text("import grpc\n")
    (core / "relative.py").write_text("from ..engine import executor\n")
    (core / "lazy.py").write_text("def f():\n    from orchestrator.store.base import Store\n")
    (core / "clean.py").write_text("from orchestrator.core import machine\nimport json\n")
    assert violations(tmp_path / "orchestrator", FORBIDDEN) == [
        "orchestrator.core.eager -> grpc",
        "orchestrator.core.lazy -> orchestrator.store.base",
        "orchestrator.core.lazy -> orchestrator.store.base.Store",
        "orchestrator.core.relative -> orchestrator.engine",
        "orchestrator.core.relative -> orchestrator.engine.executor",
    ]


def loaded_after_import(modules: list[str]) -> list[str]:
    """The forbidden top-level packages in sys.modules after importing `modules` afresh."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {TRANSPORTS_AND_DRIVERS!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def core_modules() -> list[str]:
    return sorted(module_name(path, ORCHESTRATOR) for path in (ORCHESTRATOR / "core").rglob("*.py"))


def test_the_whole_core_loads_no_transport_or_driver():
    modules = core_modules()
    assert "orchestrator.core.machine" in modules
    assert loaded_after_import(modules) == []


def test_the_runtime_check_sees_a_module_that_does_load_grpc():
    """The probe itself works: the servicer's error table does pull grpc in."""
    assert loaded_after_import(["orchestrator.api.status"]) == ["grpc"]
