"""What /proc says about the harness's child processes (started and stopped by
tools.processes, by PID, never by name).

CPU time is read from /proc/<pid>/stat (utime + stime, all threads) and peak RSS
from VmHWM in /proc/<pid>/status, so the benchmark needs no psutil.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tools.processes import ChildError

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a live process (all its threads), or None when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class PostgresCpu:
    """CPU of a local PostgreSQL server: the postmaster and all its children.

    Children that exit are reaped by the postmaster, whose cutime/cstime then
    hold their CPU, so the sum over (postmaster self + children waited for +
    live children) only grows and a delta counts every backend that ran.
    """

    def __init__(self, postmaster_pid: int) -> None:
        self.postmaster_pid = postmaster_pid

    @classmethod
    def from_backend(cls, backend_pid: int) -> PostgresCpu | None:
        """Find the postmaster as the parent of one of its backends; None when not local."""
        postmaster = parent_pid(backend_pid)
        if postmaster is None:
            return None
        try:
            name = Path(f"/proc/{postmaster}/comm").read_text().strip()
        except OSError:
            return None
        return cls(postmaster) if name.startswith("postgres") else None

    def total_seconds(self) -> float:
        fields = _stat_fields(self.postmaster_pid)
        if fields is None:
            raise ChildError("the PostgreSQL postmaster is gone")
        total = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            child = _stat_fields(int(entry.name))
            if child is not None and int(child[1]) == self.postmaster_pid:
                total += (int(child[11]) + int(child[12])) / CLOCK_TICKS
        return total


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from the first line of /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user and nice
    return total - idle, total


def machine_load(window_seconds: float = 1.0) -> dict[str, float]:
    """The 1-minute load average and the share of CPU busy over the next `window_seconds`."""
    load_1m = os.getloadavg()[0]
    busy_before, total_before = _cpu_ticks()
    time.sleep(window_seconds)
    busy_after, total_after = _cpu_ticks()
    elapsed = total_after - total_before
    busy = (busy_after - busy_before) / elapsed if elapsed > 0 else 0.0
    return {"load_1m": load_1m, "cpu_busy_share": busy}
