"""A small chaos run (`make chaos` is the full size): sagas of both types while the
orchestrator is killed with SIGKILL and restarted; every invariant holds afterwards,
and no process the run started outlives it, whether it passes or fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools import chaos

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def live_children() -> list[str]:
    """This process's children that are still running (not zombies), from /proc."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; state and ppid follow.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if ppid == me and state != "Z":
            found.append(f"{entry.name} {stat.split(' ', 2)[1]}")
    return found


@pytest.fixture
def no_processes_left_behind():
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to list child processes")
    before = set(live_children())
    yield
    assert set(live_children()) - before == set()


def test_sagas_under_repeated_orchestrator_kills_keep_every_invariant(
    tmp_path, database_url, capsys, no_processes_left_behind
):
    code = chaos.main(
        [
            "--sagas",
            "40",
            "--kills",
            "3",
            "--seed",
            "7",
            "--database",
            database_url,
            "--workdir",
            str(tmp_path),
            "--drain-timeout",
            "30",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "11 of 11 invariants hold" in out
    assert out.count("served again after") == 3


def test_a_run_whose_orchestrator_cannot_start_fails_and_stops_what_it_started(
    tmp_path, capsys, no_processes_left_behind
):
    # The participants start; the orchestrator refuses the store URL and exits.
    code = chaos.main(
        [
            "--sagas",
            "2",
            "--kills",
            "0",
            "--database",
            "unsupported://nowhere",
            "--workdir",
            str(tmp_path),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "run failed" in captured.err
