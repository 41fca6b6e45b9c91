"""What the packaging tests share: copies of the checkout's sources to build a
distribution from (so that the worktree gets no build/ or egg-info of its own), and
compiling a user's proto against an installed package's .proto files."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATOR_SOURCES = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "orchestrator",
    "participants",
    "saga",
)
"""What the orchestrator's distribution is built from."""
KIT_SOURCES = ("participants/kit", "saga/participants/common/v1")
"""What the kit's distribution is built from, laid out as in the checkout (its pyproject
names the proto package by a path relative to it)."""

_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")


def copy_sources(names: Iterable[str], target: Path) -> None:
    """Copy each file or folder `name` of the checkout to `target / name`."""
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target / name, ignore=_IGNORED)
        else:
            shutil.copy2(ROOT / name, target / name)


def compile_users_proto(proto: Path, project: Path, site_packages: Path, out: Path) -> int:
    """protoc's exit status for `proto` (under `project`), importing what it needs from
    `site_packages` and protobuf's well-known types only; Python stubs go to `out`."""
    well_known = Path(protoc.__file__).parent / "_proto"
    return int(
        protoc.main(
            [
                "protoc",
                f"-I{project}",
                f"-I{site_packages}",
                f"-I{well_known}",
                f"--python_out={out}",
                str(proto),
            ]
        )
    )
