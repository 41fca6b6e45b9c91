"""Turning measured runs into figures, ratios, a short table and the JSON file."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SYSTEM_LABELS = {"ours": "ours", "ceiling": "ceiling", "dbos": "dbos"}


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks; `sorted_values` must be sorted and non-empty."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    position = fraction * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    values = sorted(latencies_ms)
    if not values:
        return {}
    return {
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "mean": sum(values) / len(values),
        "max": values[-1],
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def ratios(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours over the ceiling and over DBOS, per workload and concurrency, for runs that worked."""
    ok = {
        (run["system"], run["workload"], run["concurrency"]): run
        for run in runs
        if run.get("status") == "ok"
    }
    rows = []
    for (system, workload, concurrency), ours in ok.items():
        if system != "ours":
            continue
        row: dict[str, Any] = {"workload": workload, "concurrency": concurrency}
        for peer in ("ceiling", "dbos"):
            other = ok.get((peer, workload, concurrency))
            row[f"throughput_ours_over_{peer}"] = _ratio(
                ours["throughput_per_s"], other["throughput_per_s"] if other else None
            )
            row[f"p50_ours_over_{peer}"] = _ratio(
                ours["latency_ms"].get("p50"), other["latency_ms"].get("p50") if other else None
            )
        rows.append(row)
    return rows


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for index, row in enumerate([header, *rows]):
        cells = [
            cell.ljust(width) if column < 3 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    """The short aligned table printed at the end of `make bench`."""
    header = [
        "system",
        "workload",
        "c",
        "sagas/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "commits/saga",
        "cpu ms/saga: sys",
        "part",
        "pg",
        "load",
        "rss MiB",
    ]
    rows = []
    notes = []
    for run in results["runs"]:
        label = SYSTEM_LABELS.get(run["system"], run["system"])
        if run.get("status") != "ok":
            notes.append(
                f"{label} {run['workload']} c={run['concurrency']}: {run['status']}: "
                f"{run.get('reason', '')}"
            )
        if run.get("warning"):
            notes.append(f"{label} {run['workload']} c={run['concurrency']}: {run['warning']}")
        if "throughput_per_s" not in run:
            rows.append(
                [label, run["workload"], str(run["concurrency"]), run["status"]]
                + ["-"] * (len(header) - 4)
            )
            continue
        cpu = {role: seconds * 1000.0 for role, seconds in run["cpu_s_per_saga"].items()}
        latency = run["latency_ms"]
        rows.append(
            [
                label,
                run["workload"],
                str(run["concurrency"]),
                _fmt(run["throughput_per_s"]),
                _fmt(latency.get("p50"), 2),
                _fmt(latency.get("p95"), 2),
                _fmt(latency.get("p99"), 2),
                _fmt(run["commits_per_saga"], 2),
                _fmt(cpu.get("system"), 2),
                _fmt(cpu.get("participants"), 2),
                _fmt(cpu.get("postgres"), 2),
                _fmt(cpu.get("loadgen"), 2) if run["separate_load"] else "in sys",
                _fmt(run["peak_rss_mib"], 0),
            ]
        )
    text = [_table(header, rows), *notes]
    ratio_rows = [
        [
            row["workload"],
            str(row["concurrency"]),
            "",
            _fmt(row["throughput_ours_over_ceiling"], 2),
            _fmt(row["p50_ours_over_ceiling"], 2),
            _fmt(row["throughput_ours_over_dbos"], 2),
            _fmt(row["p50_ours_over_dbos"], 2),
        ]
        for row in results["ratios"]
    ]
    if ratio_rows:
        text.append("")
        text.append(
            _table(
                [
                    "ratios",
                    "c",
                    "",
                    "thr ours/ceiling",
                    "p50 ours/ceiling",
                    "thr ours/dbos",
                    "p50 ours/dbos",
                ],
                ratio_rows,
            )
        )
    for run in results["runs"]:
        profile = run.get("profile")
        if not profile or "self_by_package" not in profile:
            continue
        text.append("")
        text.append(
            f"profile of {run['system']} ({run['workload']}, c={run['concurrency']}; "
            f"{profile['samples']} samples; this run's figures include py-spy's cost)"
        )
        text.append("  own time by package: " + _entries(profile["self_by_package"], 8))
        text.append("  own time:            " + _entries(profile["top_self"]))
        text.append(
            f"  time in and below ({profile['focus']}): "
            + _entries(profile["top_inclusive_in_focus"])
        )
    return "\n".join(text)


def _entries(entries: Sequence[dict[str, Any]], count: int = 10) -> str:
    return "; ".join(f"{entry['function']} {entry['percent']}%" for entry in entries[:count])


def write(results: dict[str, Any], out_dir: Path, stamp: str) -> Path:
    """Write .bench/results-<stamp>.json and the same as .bench/latest.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"results-{stamp}.json"
    text = json.dumps(results, indent=2, sort_keys=False) + "\n"
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    return path
