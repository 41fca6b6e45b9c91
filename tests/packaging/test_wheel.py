"""The wheel a user installs: the .proto files beside their stubs, and the LICENSE.

A user's own proto imports `saga/participants/common/v1/command.proto`; with the
protos inside the installed package, `-I <site-packages>` is all protoc needs.
The wheel is built from a copy of the sources, so the worktree gets no build/.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.packaging.support import (
    ORCHESTRATOR_SOURCES,
    ROOT,
    compile_users_proto,
    copy_sources,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USER_PROTO = """\
syntax = "proto3";

package acme.wheel.v1;

import "saga/participants/common/v1/command.proto";

message PingRequest {
  saga.participants.common.v1.CommandContext context = 1;
}
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    copy_sources(ORCHESTRATOR_SOURCES, source)
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(dist),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = dist.glob("saga_orchestrator-*.whl")
    return built


def test_the_wheel_ships_every_proto_beside_its_stubs(wheel):
    # Ours only: the vendored protos/google/ is googleapis-common-protos' to ship.
    ours = (ROOT / "protos" / "saga").rglob("*.proto")
    protos = sorted(str(p.relative_to(ROOT / "protos")) for p in ours)
    assert "saga/participants/common/v1/command.proto" in protos
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in protos if name not in names]
    assert not missing, f"protos missing from the wheel: {missing}"
    for name in protos:
        assert name.replace(".proto", "_pb2.py") in names


def test_the_wheel_carries_the_license_and_its_expression(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(license_name) == (ROOT / "LICENSE").read_bytes()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()


def test_a_users_proto_compiles_against_the_installed_package(wheel, tmp_path):
    site_packages = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site_packages)
    project = tmp_path / "project"
    (project / "acme" / "wheel" / "v1").mkdir(parents=True)
    (project / "acme" / "wheel" / "v1" / "wheel.proto").write_text(USER_PROTO)
    proto = project / "acme" / "wheel" / "v1" / "wheel.proto"
    status = compile_users_proto(proto, project, site_packages, tmp_path)
    assert status == 0, "protoc could not import command.proto from the installed package"
    assert (tmp_path / "acme" / "wheel" / "v1" / "wheel_pb2.py").is_file()
