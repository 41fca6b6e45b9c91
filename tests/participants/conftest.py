"""Fixtures that run participants as real processes and always reap them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.participants.harness import ParticipantsProcess, participant_env

Launch = Callable[..., ParticipantsProcess]


def _launcher(base: Path, started: list[ParticipantsProcess]) -> Launch:
    def launch(
        *args: str, state_dir: Path | None = None, env: dict[str, str] | None = None
    ) -> ParticipantsProcess:
        """Start participants with `args` and wait for the ready file.

        Without `state_dir` each process gets a fresh one; pass the same
        directory again to restart on the same state.
        """
        state_dir = state_dir or base / f"state-{len(started)}"
        process = ParticipantsProcess(base, state_dir, list(args), env or participant_env())
        started.append(process)
        process.wait_ready()
        return process

    return launch


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start participant processes; every one is stopped and reaped after the test."""
    started: list[ParticipantsProcess] = []
    try:
        yield _launcher(tmp_path, started)
    finally:
        for process in started:
            process.stop()


@pytest.fixture(scope="session")
def launch_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launch]:
    """Like `launch`, for processes shared by many tests (each test uses fresh keys)."""
    started: list[ParticipantsProcess] = []
    try:
        yield _launcher(tmp_path_factory.mktemp("participants"), started)
    finally:
        for process in started:
            process.stop()


@pytest.fixture(scope="session")
def participants(launch_shared: Launch) -> ParticipantsProcess:
    """All services, default settings, one process for the whole session."""
    return launch_shared()


@pytest.fixture
def channel(participants: ParticipantsProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(participants.address) as channel:
        yield channel
