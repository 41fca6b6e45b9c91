"""Running a bench harness from a test without leaving its processes behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_harness(args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=...)`, in a
    process group of its own that is ended whole afterwards. A harness starts
    participants, orchestrators and load generators; when the test stops waiting (its
    timeout, pytest-timeout, an interrupt) killing the harness alone would leave those
    running, holding ports and database connections."""
    process = subprocess.Popen(
        list(args),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        _end_group(process.pid)
        process.communicate()
        raise
    _end_group(process.pid)  # anything the harness left running
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _end_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
