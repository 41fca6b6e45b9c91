"""Our orchestrator as its own process, serving the benchmark saga type.

It calls the engine's own `serve()` with the benchmark definitions, so the
benchmark needs no change to the engine; `saga serve` does the same with the
example definitions. Every participant name of the benchmark saga points at
the one bench participants process.

    python -m bench.serve_orchestrator --database URL --participants HOST:PORT --ready-file F
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from bench.sagas import DEFINITIONS
from bench.workload import PARTICIPANTS
from orchestrator.core.limits import Limits
from orchestrator.server import ServeConfig, serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_orchestrator", description=__doc__)
    parser.add_argument("--database", required=True)
    parser.add_argument("--participants", required=True, help="HOST:PORT of bench.participant")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--ready-file")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument(
        "--max-sagas-in-flight",
        type=int,
        default=Limits().max_sagas_in_flight,
        help="raised by bench.batch_start, whose starts outrun the sagas they start",
    )
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper())
    config = ServeConfig(
        database_url=args.database,
        listen=args.listen,
        participants=dict.fromkeys(PARTICIPANTS, args.participants),
        ready_file=args.ready_file,
        limits=Limits(max_sagas_in_flight=args.max_sagas_in_flight),
    )
    asyncio.run(serve(config, DEFINITIONS))


if __name__ == "__main__":
    main()
