"""The benchmark's pure bookkeeping: the round-robin order of repeats, and cells of
repeated runs with their median, spread and busy flags (no processes, no database)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.harness import Variant, is_busy, parse_args, schedule
from bench.report import cells, ratios, render


def test_each_repeat_starts_with_the_next_system_so_none_always_goes_first() -> None:
    variant = Variant("success", 8, 100, 16)
    slots = schedule([variant], ["group", "loop", "ours", "dbos"], repeats=4)
    orders = [[slot.system for slot in slots if slot.repeat == r] for r in range(4)]
    assert orders == [
        ["group", "loop", "ours", "dbos"],
        ["loop", "ours", "dbos", "group"],
        ["ours", "dbos", "group", "loop"],
        ["dbos", "group", "loop", "ours"],
    ]
    assert {slot.variant for slot in slots} == {variant}


def test_two_replicas_run_only_where_the_concurrency_can_keep_them_busy() -> None:
    low, high = Variant("success", 8, 100, 16), Variant("success", 64, 800, 128)
    slots = schedule([low, high], ["ours", "ours2"], repeats=2)
    assert [(slot.variant.concurrency, slot.system) for slot in slots] == [
        (8, "ours"),
        (8, "ours"),
        (64, "ours"),
        (64, "ours2"),
        (64, "ours2"),
        (64, "ours"),
    ]
    lowered = schedule([low], ["ours", "ours2"], repeats=1, multi_replica_from=8)
    assert [slot.system for slot in lowered] == ["ours", "ours2"]


def test_defaults_are_three_repeats_of_ten_seconds_and_quick_is_shorter() -> None:
    full = parse_args([])
    assert (full.repeats, full.seconds, full.busy_load) == (3, 10.0, 0.5)
    assert full.systems == ["group", "loop", "ours", "dbos", "ours2"]
    quick = parse_args(["--quick"])
    assert quick.seconds < full.seconds


@pytest.mark.parametrize(
    ("load", "cpu", "first", "busy"),
    [
        (0.1, 0.01, True, False),
        (0.9, 0.01, True, True),  # before the first run, the load is someone else's
        (2.5, 0.01, False, False),  # later, a high load with an idle CPU is our own tail
        (0.1, 0.40, False, True),  # a busy CPU is busy whenever it is seen
    ],
)
def test_a_run_is_busy_when_the_cpu_is_or_the_first_run_finds_load(
    load: float, cpu: float, first: bool, busy: bool
) -> None:
    machine = {"load_1m": load, "cpu_busy_share": cpu}
    assert is_busy(machine, first, parse_args([])) is busy


def _run(system: str, throughput: float, p50: float, load: float, status: str = "ok") -> Any:
    return {
        "system": system,
        "workload": "success",
        "concurrency": 8,
        "repeat": 0,
        "status": status,
        "busy": load > 0.5,
        "machine_before": {"load_1m": load, "cpu_busy_share": 0.1},
        "throughput_per_s": throughput,
        "latency_ms": {"p50": p50, "p95": p50 * 2, "p99": p50 * 3},
        "commits_per_saga": 1.0,
        "cpu_s_per_saga": {"system": 0.002, "participants": 0.001, "postgres": 0.001},
        "peak_rss_mib": 60.0,
        "separate_load": False,
    }


@pytest.mark.parametrize("failed_status", ["error", "unavailable"])
def test_a_cell_reports_median_and_spread_of_its_working_runs_and_counts_busy_ones(
    failed_status: str,
) -> None:
    runs = [
        _run("ours", 300.0, 10.0, load=0.1),
        _run("ours", 100.0, 30.0, load=0.9),
        _run("ours", 200.0, 20.0, load=0.2),
        _run("ours", 999.0, 1.0, load=0.1, status=failed_status),
        _run("group", 400.0, 5.0, load=0.1),
    ]
    by_system = {cell["system"]: cell for cell in cells(runs)}
    ours = by_system["ours"]
    assert (ours["runs"], ours["ok_runs"], ours["busy_runs"]) == (4, 3, 1)
    assert ours["throughput_per_s"] == {"median": 200.0, "min": 100.0, "max": 300.0}
    assert ours["p50_ms"] == {"median": 20.0, "min": 10.0, "max": 30.0}
    assert ours["cpu_ms_per_saga"]["system"]["median"] == pytest.approx(2.0)
    [row] = ratios(list(by_system.values()))
    assert row["throughput_ours_over_group"] == pytest.approx(0.5)
    assert row["p50_ours_over_group"] == pytest.approx(4.0)
    assert row["throughput_ours_over_loop"] is None
    table = render(
        {"cells": list(by_system.values()), "ratios": [row], "runs": runs, "busy_load": 0.5}
    )
    assert "3/4 (1 busy)" in table
    assert "200.0 [100.0-300.0]" in table
    assert table.count("BUSY") == 2  # the busy run's flag, and the legend
