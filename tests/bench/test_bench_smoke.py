"""A tiny run of `make bench` (ours, two replicas, both ceilings; no DBOS): the harness works.

It proves the plumbing, not the speed: every process starts and stops, every
throwaway database is dropped, and the JSON carries every figure with a sane value.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import require_postgres_url
from tests.support.harness import run_harness

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

RUN_KEYS = {
    "system",
    "workload",
    "concurrency",
    "sagas",
    "status",
    "throughput_per_s",
    "latency_ms",
    "commits_per_saga",
    "cpu_s_per_saga",
    "peak_rss_mib",
    "completion_detection",
    "repeat",
    "machine_before",
    "busy",
}
CEILING_COMMITS = {"success": 8, "compensation": 12}
"""Commits per saga of the per-write loop: one per write."""


def _existing(url: str, databases: set[str]) -> set[str]:
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (sorted(databases),)
        ).fetchall()
    return {row[0] for row in rows}


@pytest.mark.timeout(300)  # four systems, then the floor rows: over a minute when loaded
def test_small_bench_run_writes_every_figure_for_ours_and_both_ceilings(tmp_path: Path) -> None:
    url = require_postgres_url()
    done = run_harness(
        [
            sys.executable,
            "bench/run.py",
            "--postgres-url",
            url,
            "--systems",
            "ours,group,loop,ours2",
            "--multi-replica-from",
            "4",
            "--concurrency",
            "4",
            "--compensation-concurrency",
            "4",
            "--sagas-c1",
            "10",
            "--sagas",
            "10",
            "--warmup",
            "3",
            "--seconds",
            "0",
            "--repeats",
            "1",  # the order of repeats and the cells' spread are unit tests (test_bench_plan)
            "--floor-calls",
            "100",
            "--out-dir",
            str(tmp_path),
        ],
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["postgres"]["fsync"] == "on"
    assert results["postgres"]["synchronous_commit"] == "on"
    runs = results["runs"]
    cells = {
        (system, workload, concurrency)
        for system in ("ours", "group", "loop", "ours2")
        for workload, concurrency in (("success", 4), ("compensation", 4))
    }
    assert sorted((run["system"], run["workload"], run["concurrency"]) for run in runs) == sorted(
        cells
    )
    for run in runs:
        assert run.keys() >= RUN_KEYS, run
        assert run["status"] == "ok", run
        assert run["sagas"] == 10
        assert run["throughput_per_s"] > 0
        latency = run["latency_ms"]  # committed by the system itself, read from its tables
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
        assert run["commits_per_saga"] > 0
        assert run["cpu_s_per_saga"]["system"] >= 0
        assert run["peak_rss_mib"] > 0
        machine = run["machine_before"]
        assert machine["load_1m"] >= 0 and 0 <= machine["cpu_busy_share"] <= 1
        assert run["busy"] == (
            machine["cpu_busy_share"] > 0.15 or (run is runs[0] and machine["load_1m"] > 0.5)
        )
    for run in runs:
        if run["system"] not in ("group", "loop"):
            continue
        # The ceilings count their own commits: the database's count must agree, within
        # what PostgreSQL's statistics have not flushed yet (a backend reports its
        # counters at most once a second) and what other clients commit meanwhile.
        own = run["driver"]["self_counted_commits_per_saga"]
        writes = CEILING_COMMITS[run["workload"]]
        if run["system"] == "loop":
            assert own == writes
        else:  # the group writer never commits more often than there are writes
            assert 0 < own <= writes
        # The database counts the warm-up's commits too: compare it with the same span.
        own_with_warmup = run["driver"]["self_counted_commits_per_saga_with_warmup"]
        assert 0 < own_with_warmup <= writes
        assert 0.9 * own_with_warmup <= run["commits_per_saga"] < own_with_warmup + 2
    for cell in results["cells"]:
        assert cell["runs"] == cell["ok_runs"] == 1
        spread = cell["throughput_per_s"]
        assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    for run in runs:  # two replicas: sagas went to each in turn, and both stopped cleanly
        if run["system"] == "ours2":
            assert run["exit_codes"] == {"loadgen": 0, "orchestrator-1": 0, "orchestrator-2": 0}
    assert {(row["system"], row["workload"]) for row in results["ratios"]} == {
        (system, workload)
        for system in ("ours", "ours2")
        for workload in ("success", "compensation")
    }
    for row in results["ratios"]:
        assert row["throughput_ours_over_group"] > 0
        assert row["throughput_ours_over_loop"] > 0
        assert row["throughput_ours_over_dbos"] is None
    assert "group-commit ceiling" in done.stdout and "per-write loop" in done.stdout
    # The floor: a bare gRPC call pair and a bare group-commit write, at c=1 and the top c.
    floor = {(row["floor"], row["concurrency"]): row for row in results["floor"]}
    assert set(floor) == {
        (name, concurrency)
        for name in ("grpc call pair", "group-commit write")
        for concurrency in (1, 4)
    }
    for (name, _), row in floor.items():
        assert row["calls"] == 100 and row["calls_per_s"] > 0
        assert row["cpu_ms_per_call_client"] > 0
        other = "cpu_ms_per_call_server" if name == "grpc call pair" else "cpu_ms_per_call_postgres"
        assert row[other] >= 0
    assert 0 < floor[("group-commit write", 1)]["commits_per_call"] == 1.0
    assert 0 < floor[("group-commit write", 4)]["commits_per_call"] <= 1.0
    assert "the floor (bare grpc.aio" in done.stdout
    databases = {run["database"] for run in runs}
    assert len(databases) == len(runs)
    assert all(name.startswith("saga_bench_") for name in databases)
    assert not _existing(url, databases), "throwaway databases left behind"
