"""A tiny run of `make bench-http`: both transports start sagas and the figures are printed.

It proves the plumbing (processes start and stop, both clients work), not the speed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.support.harness import run_harness

pytestmark = [pytest.mark.slow]


def test_a_small_run_prints_both_transports_and_the_ratios(tmp_path: Path):
    result = run_harness(
        [sys.executable, "-m", "bench.http_api", "--calls-c1", "5", "--calls-c64", "64"],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for transport in ("grpc", "http"):
        assert re.search(rf"^{transport} +c=1 p50 [0-9.]+ ms +c=64 [0-9]+/s$", result.stdout, re.M)
    assert re.search(
        r"^HTTP/gRPC: c=1 p50 [0-9.]+x .* c=64 throughput [0-9.]+x", result.stdout, re.M
    )
