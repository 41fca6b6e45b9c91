"""A tiny run of `make bench-http`: both transports start sagas and the figures are printed.

It proves the plumbing (processes start and stop, both clients work), not the speed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_a_small_run_prints_both_transports_and_the_ratios(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.http_api", "--calls-c1", "5", "--calls-c64", "64"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for transport in ("grpc", "http"):
        assert re.search(rf"^{transport} +c=1 p50 [0-9.]+ ms +c=64 [0-9]+/s$", result.stdout, re.M)
    assert re.search(
        r"^HTTP/gRPC: c=1 p50 [0-9.]+x .* c=64 throughput [0-9.]+x", result.stdout, re.M
    )
