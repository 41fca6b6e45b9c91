"""The load shape every system is driven with, and the driver side of the harness protocol.

Load is a closed loop: `concurrency` workers each run one saga after another
until `n` have been run or, with `seconds`, until that much time has passed
(no saga is started after it), so at most `concurrency` sagas are in flight.
The client-side latency runs from just before a saga is started to the moment
its terminal state is known to be committed (each driver says how it knows);
the harness reports the latency each system committed itself, read from its
tables by the ids in the result (bench/latency.py).

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

RunOne = Callable[[int], Awaitable[tuple[str, str, float]]]
"""Runs saga number i; returns its id, its terminal status and the perf_counter() time it
was known to be committed."""


@dataclass
class LoadResult:
    """What one closed-loop run measured."""

    sagas: int
    concurrency: int
    elapsed_s: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    saga_ids: list[str] = field(default_factory=list)

    def as_event(self) -> dict[str, Any]:
        return {
            "sagas": self.sagas,
            "concurrency": self.concurrency,
            "elapsed_s": self.elapsed_s,
            "latencies_ms": [round(value, 4) for value in self.latencies_ms],
            "statuses": dict(self.statuses),
            "saga_ids": self.saga_ids,
        }


async def closed_loop(
    n: int, concurrency: int, run_one: RunOne, seconds: float | None = None
) -> LoadResult:
    """Run sagas with `concurrency` workers until n are run (n = 0: no limit) or, with
    `seconds`, until none may start any more; elapsed time ends with the last saga."""
    numbers = itertools.count()
    result = LoadResult(sagas=0, concurrency=concurrency, elapsed_s=0.0)
    began = time.perf_counter()
    deadline = began + seconds if seconds is not None else None

    def may_start(index: int) -> bool:
        if n and index >= n:
            return False
        return deadline is None or time.perf_counter() < deadline

    async def worker() -> None:
        while may_start(index := next(numbers)):
            started = time.perf_counter()
            saga_id = ""
            try:
                saga_id, status, finished = await run_one(index)
            except Exception as error:  # a broken saga is counted, not fatal to the run
                status, finished = f"ERROR:{type(error).__name__}", time.perf_counter()
            result.latencies_ms.append((finished - started) * 1000.0)
            result.statuses[status] += 1
            result.saga_ids.append(saga_id)
            result.sagas += 1

    workers = concurrency if not n else min(concurrency, n)
    await asyncio.gather(*(worker() for _ in range(max(1, workers))))
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
    seconds: float | None = None,
) -> None:
    """Warm up, wait for "go", run the measured load (n sagas, or for `seconds`), report,
    wait for "exit"."""
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
    measured = await closed_loop(n, concurrency, run_one, seconds)
    emit("result", **measured.as_event(), **(details() if details else {}))
    await read_command()
