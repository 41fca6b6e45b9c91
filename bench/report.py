"""Turning measured runs into figures, cells (median and spread of repeats), ratios, the
tables `make bench` prints and the JSON file."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SYSTEM_LABELS = {
    "group": "group-commit ceiling",
    "loop": "per-write loop",
    "ours": "ours",
    "dbos": "dbos",
    "ours2": "ours, 2 replicas",
}
PEERS = ("group", "loop", "dbos")
"""What ours is compared with, in the ratios."""
OURS = ("ours", "ours2")
"""Our systems (one replica, two), each compared with every peer."""
CPU_ROLES = ("system", "participants", "postgres", "loadgen")


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


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """Median, min and max of the repeats' values (None when there are none)."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def cells(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One cell per system, workload and concurrency (in plan order): the median and the
    min-max of its runs that worked, how many ran and how many began on a busy machine."""
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((run["workload"], run["concurrency"], run["system"]), []).append(run)
    result = []
    for (workload, concurrency, system), group in grouped.items():
        ok = [run for run in group if run.get("status") == "ok"]
        cpu_ms = {
            role: spread([run["cpu_s_per_saga"][role] * 1000.0 for run in ok])
            for role in CPU_ROLES
            if ok and all(role in run["cpu_s_per_saga"] for run in ok)
        }
        result.append(
            {
                "system": system,
                "workload": workload,
                "concurrency": concurrency,
                "runs": len(group),
                "ok_runs": len(ok),
                "busy_runs": sum(1 for run in group if run.get("busy")),
                "statuses": sorted({run.get("status", "?") for run in group}),
                "throughput_per_s": spread([run["throughput_per_s"] for run in ok]),
                "p50_ms": spread([run["latency_ms"]["p50"] for run in ok]),
                "p95_ms": spread([run["latency_ms"]["p95"] for run in ok]),
                "p99_ms": spread([run["latency_ms"]["p99"] for run in ok]),
                "commits_per_saga": spread([run["commits_per_saga"] for run in ok]),
                "cpu_ms_per_saga": cpu_ms,
                "peak_rss_mib": spread(
                    [run["peak_rss_mib"] for run in ok if run["peak_rss_mib"] is not None]
                ),
                "separate_load": any(run.get("separate_load") for run in ok),
            }
        )
    return result


def _median(cell: dict[str, Any] | None, key: str) -> float | None:
    if cell is None or cell.get(key) is None:
        return None
    return float(cell[key]["median"])


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def ratios(all_cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours over each peer (the two ceilings and DBOS), per workload and concurrency, from
    the medians of the cells."""
    by_key = {(cell["system"], cell["workload"], cell["concurrency"]): cell for cell in all_cells}
    rows = []
    for (system, workload, concurrency), ours in by_key.items():
        if system not in OURS:
            continue
        row: dict[str, Any] = {"system": system, "workload": workload, "concurrency": concurrency}
        for peer in PEERS:
            other = by_key.get((peer, workload, concurrency))
            row[f"throughput_ours_over_{peer}"] = _ratio(
                _median(ours, "throughput_per_s"), _median(other, "throughput_per_s")
            )
            row[f"p50_ours_over_{peer}"] = _ratio(_median(ours, "p50_ms"), _median(other, "p50_ms"))
        rows.append(row)
    return rows


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 3) -> str:
    """Aligned columns: the first `left` to the left, the rest (figures) to the right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for index, row in enumerate([header, *rows]):
        cells = [
            cell.ljust(width) if column < left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _spread_text(value: dict[str, float] | None, digits: int = 1) -> str:
    """`median [min-max]`, or the median alone for a single run."""
    if value is None:
        return "-"
    if value["min"] == value["max"]:
        return _fmt(value["median"], digits)
    return (
        f"{_fmt(value['median'], digits)} [{_fmt(value['min'], digits)}-"
        f"{_fmt(value['max'], digits)}]"
    )


def render(results: dict[str, Any]) -> str:
    """The tables printed at the end of `make bench`: cells, ratios, runs, profiles."""
    busy_load = results.get("busy_load", 0.5)
    header = [
        "system",
        "workload",
        "c",
        "runs",
        "sagas/s median [min-max]",
        "p50 ms median [min-max]",
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
    for cell in results["cells"]:
        cpu = cell["cpu_ms_per_saga"]
        runs = f"{cell['ok_runs']}/{cell['runs']}"
        if cell["busy_runs"]:
            runs += f" ({cell['busy_runs']} busy)"
        rows.append(
            [
                SYSTEM_LABELS.get(cell["system"], cell["system"]),
                cell["workload"],
                str(cell["concurrency"]),
                runs,
                _spread_text(cell["throughput_per_s"]),
                _spread_text(cell["p50_ms"], 2),
                _fmt(_median(cell, "p95_ms"), 2),
                _fmt(_median(cell, "p99_ms"), 2),
                _fmt(_median(cell, "commits_per_saga"), 2),
                _fmt(_median(cpu, "system"), 2),
                _fmt(_median(cpu, "participants"), 2),
                _fmt(_median(cpu, "postgres"), 2),
                _fmt(_median(cpu, "loadgen"), 2) if cell["separate_load"] else "in sys",
                _fmt(_median(cell, "peak_rss_mib"), 0),
            ]
        )
    text = [_table(header, rows, left=4)]
    ratio_rows = [
        [SYSTEM_LABELS[row.get("system", "ours")], row["workload"], str(row["concurrency"])]
        + [
            _fmt(row[f"{kind}_ours_over_{peer}"], 2)
            for peer in PEERS
            for kind in ("throughput", "p50")
        ]
        for row in results["ratios"]
    ]
    if ratio_rows:
        text.append("")
        ratio_header = ["over peers", "workload", "c"] + [
            f"{kind} / {SYSTEM_LABELS[peer].split()[0]}"
            for peer in PEERS
            for kind in ("thr", "p50")
        ]
        text.append(_table(ratio_header, ratio_rows, left=2))
    if results.get("floor"):
        text.append("")
        text.append(render_floor(results["floor"]))
    text.append("")
    busy_cpu = results.get("busy_cpu", 0.15)
    text.append(
        "runs in order (load = 1-minute load average before; BUSY: CPU busy share above "
        f"{100 * busy_cpu:.0f} %, or the first run's load above {busy_load}):"
    )
    run_rows = []
    notes = []
    for run in results["runs"]:
        label = SYSTEM_LABELS.get(run["system"], run["system"])
        machine = run.get("machine_before", {})
        ok = "throughput_per_s" in run and run.get("status") == "ok"
        run_rows.append(
            [
                label,
                run["workload"],
                str(run["concurrency"]),
                f"#{run.get('repeat', 0) + 1}",
                _fmt(machine.get("load_1m"), 2),
                _fmt(100.0 * machine["cpu_busy_share"], 0) if machine else "-",
                "BUSY" if run.get("busy") else "",
                _fmt(run["throughput_per_s"]) if ok else run.get("status", "?"),
                _fmt(run["latency_ms"].get("p50"), 2) if ok else "-",
            ]
        )
        where = f"{label} {run['workload']} c={run['concurrency']} #{run.get('repeat', 0) + 1}"
        if run.get("status") not in ("ok", None):
            notes.append(f"{where}: {run['status']}: {run.get('reason', '')}")
        if run.get("warning"):
            notes.append(f"{where}: {run['warning']}")
    text.append(
        _table(
            ["system", "workload", "c", "run", "load", "cpu busy %", "flag", "sagas/s", "p50 ms"],
            run_rows,
            left=4,
        )
    )
    text.extend(notes)
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


def render_floor(rows: Sequence[dict[str, Any]]) -> str:
    """The floor rows (bench/floor.py): a bare gRPC call pair and a bare group-commit write.

    Per saga the engine pays one server call and three client calls, and its writes."""
    header = [
        "floor",
        "c",
        "calls",
        "calls/s",
        "cpu ms/call: caller",
        "server",
        "pg",
        "commits/call",
    ]
    table = [
        [
            row["floor"],
            str(row["concurrency"]),
            str(row["calls"]),
            _fmt(row["calls_per_s"]),
            _fmt(row["cpu_ms_per_call_client"], 3),
            _fmt(row.get("cpu_ms_per_call_server"), 3),
            _fmt(row.get("cpu_ms_per_call_postgres"), 3),
            _fmt(row.get("commits_per_call"), 3),
        ]
        for row in rows
    ]
    return (
        "the floor (bare grpc.aio unary call pair, 200-byte messages, client and server in "
        "separate processes; bare group-commit INSERT of 200 bytes):\n"
        + _table(header, table, left=2)
    )


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
