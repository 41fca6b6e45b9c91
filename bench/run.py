"""`make bench` runs this: our orchestrator against the two ceilings and DBOS Transact.

A script path rather than `-m`, so `python bench/run.py` works from a fresh
clone; the repository root replaces this directory on sys.path so the
modules in bench/ are imported as the `bench` package and shadow nothing.
See bench/harness.py for what is measured and how, and `--help` for options.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _main() -> int:
    sys.path[0] = str(REPO)
    harness = importlib.import_module("bench.harness")
    try:
        return int(harness.main())
    except KeyboardInterrupt:
        print("bench: interrupted; every process stopped and every database dropped", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(_main())
