"""A tiny run of `make bench` (ours and the ceiling, no DBOS): the harness works end to end.

It proves the plumbing, not the speed: every process starts and stops, every
throwaway database is dropped, and the JSON carries every figure with a sane value.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import require_postgres_url

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
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
}


def _existing(url: str, databases: set[str]) -> set[str]:
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (sorted(databases),)
        ).fetchall()
    return {row[0] for row in rows}


def test_small_bench_run_writes_every_figure_for_ours_and_the_ceiling(tmp_path: Path) -> None:
    url = require_postgres_url()
    done = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "--postgres-url",
            url,
            "--systems",
            "ours,ceiling",
            "--concurrency",
            "1,4",
            "--compensation-concurrency",
            "4",
            "--sagas-c1",
            "10",
            "--sagas",
            "10",
            "--warmup",
            "3",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["postgres"]["fsync"] == "on"
    assert results["postgres"]["synchronous_commit"] == "on"
    runs = results["runs"]
    assert {(run["system"], run["workload"], run["concurrency"]) for run in runs} == {
        (system, workload, concurrency)
        for system in ("ours", "ceiling")
        for workload, concurrency in (("success", 1), ("success", 4), ("compensation", 4))
    }
    for run in runs:
        assert run.keys() >= RUN_KEYS, run
        assert run["status"] == "ok", run
        assert run["throughput_per_s"] > 0
        latency = run["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
        assert run["commits_per_saga"] > 0
        assert run["cpu_s_per_saga"]["system"] >= 0
        assert run["peak_rss_mib"] > 0
    ceiling = [run for run in runs if run["system"] == "ceiling"]
    for run in ceiling:
        # The ceiling counts its own commits: the database's count must agree.
        own = run["driver"]["self_counted_commits_per_saga"]
        assert own == (8 if run["workload"] == "success" else 12)
        assert own <= run["commits_per_saga"] < own + 2
    assert {row["workload"] for row in results["ratios"]} == {"success", "compensation"}
    assert "sagas/s" in done.stdout
    databases = {run["database"] for run in runs}
    assert len(databases) == len(runs)
    assert all(name.startswith("saga_bench_") for name in databases)
    assert not _existing(url, databases), "throwaway databases left behind"
