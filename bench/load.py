"""The load shape every system is driven with, and the driver side of the harness protocol.

Load is a closed loop: `concurrency` workers each run one saga after another
until `n` have been run, so at most `concurrency` sagas are in flight. A
saga's latency runs from just before it is started to the moment its terminal
state is known to be committed (each driver says how it knows).

Protocol with the harness (one JSON object per stdout line; stdin lines back):
the driver runs the warm-up, prints {"event": "warm", ...}, waits for "go",
runs the measured load, prints {"event": "result", ...}, then waits for "exit"
(or end of input) before it closes its connections and exits. Between the
lines the harness reads CPU counters, so they bracket the measured load alone.

Standard library only: this module also runs in the DBOS virtualenv.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

RunOne = Callable[[int], Awaitable[tuple[str, float]]]
"""Runs saga number i; returns its terminal status and the perf_counter() time it was known."""


@dataclass
class LoadResult:
    """What one closed-loop run measured."""

    sagas: int
    concurrency: int
    elapsed_s: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    def as_event(self) -> dict[str, Any]:
        return {
            "sagas": self.sagas,
            "concurrency": self.concurrency,
            "elapsed_s": self.elapsed_s,
            "latencies_ms": [round(value, 4) for value in self.latencies_ms],
            "statuses": dict(self.statuses),
        }


async def closed_loop(n: int, concurrency: int, run_one: RunOne) -> LoadResult:
    """Run n sagas with `concurrency` workers; elapsed time ends with the last saga."""
    numbers = itertools.count()
    result = LoadResult(sagas=n, concurrency=concurrency, elapsed_s=0.0)

    async def worker() -> None:
        while (index := next(numbers)) < n:
            started = time.perf_counter()
            try:
                status, finished = await run_one(index)
            except Exception as error:  # a broken saga is counted, not fatal to the run
                status, finished = f"ERROR:{type(error).__name__}", time.perf_counter()
            result.latencies_ms.append((finished - started) * 1000.0)
            result.statuses[status] += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, n)))))
    result.elapsed_s = time.perf_counter() - began
    return result


def emit(event: str, **fields: Any) -> None:
    """One protocol line on stdout."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def read_command() -> str:
    """The next stdin line from the harness ("" at end of input), without blocking the loop."""
    line: str = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


async def drive(
    n: int,
    concurrency: int,
    warmup: int,
    run_one: RunOne,
    details: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Warm up, wait for "go", run the measured load, report, wait for "exit"."""
    warm = await closed_loop(warmup, concurrency, run_one) if warmup else None
    emit(
        "warm",
        sagas=warmup,
        statuses=dict(warm.statuses) if warm else {},
        **(details() if details else {}),
    )
    command = await read_command()
    if command != "go":
        raise SystemExit(f"expected 'go' from the harness, got {command!r}")
    measured = await closed_loop(n, concurrency, run_one)
    emit("result", **measured.as_event(), **(details() if details else {}))
    await read_command()
