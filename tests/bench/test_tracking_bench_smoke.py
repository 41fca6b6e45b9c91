"""A tiny run of `python -m bench.tracking`: the harness works end to end.

It proves the plumbing, not the speed: every booking ingested completes, every stuck
instance is flagged with its lateness measured, an idle `saga serve` replica reports
its cost over the open tracked sagas.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import require_postgres_url
from tests.support.harness import run_harness

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_small_tracking_run_completes_flags_and_idles(tmp_path: Path) -> None:
    url = require_postgres_url()
    done = run_harness(
        [
            sys.executable, "-m", "bench.tracking",
            "--postgres-url", url,
            "--instances", "60",
            "--batch", "20",
            "--stuck", "5",
            "--open", "100",
            "--settle-seconds", "1",
            "--idle-seconds", "1",
            "--out-dir", str(tmp_path),
        ],
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "tracking-latest.json").read_text())
    ingest, flagging, idle = result["ingest"], result["flagging"], result["idle"]
    assert ingest["events"] == 240 and ingest["completed"] == 60
    assert ingest["events_per_s"] > 0
    assert flagging["instances"] == 5
    assert flagging["late_p50_ms"] <= flagging["late_p99_ms"] <= flagging["late_max_ms"]
    assert idle["open_sagas"] >= 100 and idle["cpu_percent_of_a_core"] >= 0
    assert "events/s" in done.stdout
