"""Sampling a system's process with py-spy during the measured load (`--profile`).

py-spy lives in a virtualenv of its own (.bench/tools-venv, made on first use),
never in the project's. It samples without pausing the process
(--nonblocking), idle threads excluded, so the profile shows where CPU goes;
it still takes some CPU, so a profiled run's figures are marked as such.
"""

from __future__ import annotations

import collections
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def ensure_py_spy(venv: Path, log: Path) -> tuple[str | None, str]:
    """The py-spy executable (installed on first use), or None and why not."""
    executable = venv / "bin" / "py-spy"
    if executable.exists():
        return str(executable), ""
    print(f"bench: installing py-spy into {venv} (first use) ...", flush=True)
    try:
        with open(log, "w") as out:
            for argv in (
                [sys.executable, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "py-spy"],
            ):
                subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"cannot install py-spy: {error}"
    return (str(executable), "") if executable.exists() else (None, "py-spy did not install")


class Profiler:
    """One py-spy recording of one process, stopped with SIGINT (py-spy then writes its file)."""

    def __init__(self, executable: str, pid: int, output: Path, focus: str = "") -> None:
        self.output = output
        self.focus = focus
        self._log = output.with_suffix(".log")
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(
                [
                    executable,
                    "record",
                    "--pid",
                    str(pid),
                    "--nonblocking",
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    str(output),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self, top: int = 15) -> dict[str, Any]:
        """Stop sampling; the top functions by own samples and by samples below them."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        if not self.output.exists():
            log = self._log.read_text(errors="replace")[-500:] if self._log.exists() else ""
            return {"error": f"py-spy wrote nothing: {log}"}
        return summarize_raw(self.output.read_text(errors="replace"), top, self.focus)


def _frame(frame: str) -> tuple[str, str]:
    """`name (pkg/file.py:123)` as (`name (pkg/file.py)`, the file): one entry per function."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return f"{match['function']} ({match['file']})", match["file"]


def _package(path: str) -> str:
    """The top-level package or module a file belongs to: psycopg, asyncio, orchestrator, ..."""
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") or "?"


def summarize_raw(text: str, top: int = 15, focus: str = "") -> dict[str, Any]:
    """Shares of samples: own time per function and per package, and time spent below
    each function whose file starts with `focus` (the system's own code)."""
    own: collections.Counter[str] = collections.Counter()
    by_package: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        count = int(match["count"])
        frames = [_frame(frame) for frame in match["stack"].split(";") if frame]
        if not frames:
            continue
        total += count
        leaf, leaf_file = frames[-1]
        own[leaf] += count
        by_package[_package(leaf_file)] += count
        for function in {name for name, path in frames if focus and path.startswith(focus)}:
            inclusive[function] += count

    def share(counter: collections.Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "percent": round(100.0 * count / total, 1)}
            for name, count in counter.most_common(top)
        ]

    return {
        "samples": total,
        "top_self": share(own),
        "self_by_package": share(by_package),
        "focus": focus,
        "top_inclusive_in_focus": share(inclusive),
    }
