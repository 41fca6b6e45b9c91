"""A tiny run of `make bench-big`: the fill, both stores, the plans and the JSON work end to end.

It proves the plumbing, not the speed: 2,000 stored sagas instead of a million,
a few calls of each kind, one session per store. Every listing query must still
be planned on an index: the indexes exist for these filters, and the planner
picks them even on a small table because each one serves the ORDER BY ... LIMIT.
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

FILTERS = {
    "no filter",
    "status=FAILED",
    "saga_type=order_fulfillment",
    "needs_intervention=true",
    "create_time in middle day",
}


def test_tiny_big_store_run_reports_every_figure_and_index_plans(tmp_path: Path) -> None:
    url = require_postgres_url()
    done = run_harness(
        [
            sys.executable,
            "-m",
            "bench.big_store",
            "--postgres-url",
            url,
            "--sagas",
            "2000",
            "--rounds",
            "1",
            "--list-repeats",
            "12",
            "--deep-pages",
            "2",
            "--deep-repeats",
            "2",
            "--get-calls",
            "30",
            "--start-sagas",
            "40",
            "--start-warmup",
            "10",
            "--concurrency",
            "8",
            "--out-dir",
            str(tmp_path),
        ],
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    results = json.loads((tmp_path / "big-store-latest.json").read_text())
    assert results.keys() >= {
        "fill",
        "lists",
        "deep",
        "plans",
        "sessions",
        "stores",
        "ratios_big_over_empty",
        "load_average",
        "postgres",
    }
    fill = results["fill"]
    assert fill["sagas"] == 2000
    assert fill["rows_estimated"] == {
        "sagas": 2000,
        "saga_steps": 8000,
        "saga_transitions": 12000,
    }

    lists = {row["name"]: row for row in results["lists"]}
    assert lists.keys() >= FILTERS
    assert any(name.startswith("correlation_id=") for name in lists)
    for row in lists.values():
        assert row["rows"] > 0, row
        assert 0 < row["p50_ms"] <= row["p95_ms"], row
    assert lists["no filter"]["rows"] == 50
    assert [deep["pages"] for deep in results["deep"]] == [2, 2]

    plans = {plan["name"]: plan for plan in results["plans"]}
    assert len(plans) == len(lists) + len(results["deep"])
    for name, plan in plans.items():
        assert plan["custom"]["uses_index"], (name, plan["custom"]["plan"])
        assert plan["custom"]["first_lines"][0].startswith("Limit"), name
    for name in lists:
        assert plans[name]["same_page_as_grpc"], name
    assert plans["needs_intervention=true"]["custom"]["indexes"] == ["sagas_needs_intervention_idx"]
    assert plans["status=FAILED"]["custom"]["indexes"] == ["sagas_status_listing_idx"]

    assert [session["store"] for session in results["sessions"]] == ["big", "empty"]
    for store in ("big", "empty"):
        pooled = results["stores"][store]
        assert pooled["all_completed"], pooled
        assert pooled["sagas_per_s"] > 0
        assert 0 < pooled["get_p50_ms"] <= pooled["get_p95_ms"]
    assert set(results["ratios_big_over_empty"]) >= {
        "sagas_per_s",
        "get_p50_ms",
        "store_get_p50_ms",
    }
    assert "big / empty" in done.stdout

    databases = {session["database"] for session in results["sessions"]}
    with psycopg.connect(url, autocommit=True) as connection:
        left = connection.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (sorted(databases),)
        ).fetchall()
    assert not left, f"throwaway databases left behind: {left}"
