"""`python -m tests.e2e.serve_with_telemetry`: `saga serve` with the telemetry settings.

Builds ServeConfig with metrics_listen, log_format and trace_exporter straight
from its own flags, so the telemetry tests do not depend on how the CLI spells
them. Takes the options `LocalProcess` passes (`--ready-file` last).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from orchestrator.cli import DEFAULT_DEFINITIONS_MODULE
from orchestrator.loading import load_definitions
from orchestrator.server import ServeConfig, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve_with_telemetry")
    parser.add_argument("--database", required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--participant", action="append", default=[], metavar="NAME=HOST:PORT")
    parser.add_argument("--metrics-listen")
    parser.add_argument("--log-format", default="auto")
    parser.add_argument("--trace-exporter", default="none")
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO")
    config = ServeConfig(
        database_url=args.database,
        listen=args.listen,
        participants=dict(entry.split("=", 1) for entry in args.participant),
        ready_file=args.ready_file,
        metrics_listen=args.metrics_listen,
        log_format=args.log_format,
        trace_exporter=args.trace_exporter,
    )
    asyncio.run(serve(config, load_definitions([DEFAULT_DEFINITIONS_MODULE])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
