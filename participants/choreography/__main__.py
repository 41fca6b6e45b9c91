"""`python -m participants.choreography --service flight|hotel|car_rental ...`: one
choreographed travel service as a process of its own (see the package docstring).

It runs until SIGTERM or SIGINT. With `--ready-file PATH` it writes {"service", "pid",
"queue", "exchange", "handles"} there (atomically) once its queue is bound and consumed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from participants.choreography.consumer import Failpoint, ServiceConsumer, Settings
from participants.choreography.services import SERVICES
from participants.choreography.state import ServiceState

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_EXCHANGE = "saga.choreography"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m participants.choreography",
        description="One choreographed travel service on RabbitMQ.",
    )
    parser.add_argument("--service", required=True, choices=sorted(SERVICES))
    parser.add_argument(
        "--amqp",
        default=os.environ.get("CHOREOGRAPHY_AMQP_URL", DEFAULT_URL),
        help="RabbitMQ URL (env CHOREOGRAPHY_AMQP_URL; default %(default)s)",
    )
    parser.add_argument(
        "--exchange",
        default=DEFAULT_EXCHANGE,
        help="the topic exchange every service publishes to (default %(default)s)",
    )
    parser.add_argument(
        "--queue", default="", help="this service's durable queue (default travel.<service>)"
    )
    parser.add_argument(
        "--db", type=Path, default=None, help="its SQLite file (default <service>.sqlite3)"
    )
    parser.add_argument(
        "--capacity", type=int, default=100, help="units of each item (default %(default)s)"
    )
    parser.add_argument(
        "--refuse",
        action="append",
        default=[],
        metavar="VALUE",
        help="refuse any booking with a field equal to VALUE (repeatable)",
    )
    parser.add_argument("--prefetch", type=int, default=16)
    parser.add_argument("--ready-file", type=Path, default=None)
    return parser.parse_args(argv)


def write_ready(path: Path, info: dict[str, object]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(info))
    partial.replace(path)


async def serve(args: argparse.Namespace) -> None:
    service = SERVICES[args.service]
    settings = Settings(
        url=args.amqp,
        exchange=args.exchange,
        queue=args.queue or f"travel.{service.name}",
        prefetch=args.prefetch,
    )
    state = ServiceState(
        args.db or Path(f"{service.name}.sqlite3"), service, args.capacity, frozenset(args.refuse)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def ready() -> None:
        if args.ready_file is not None:
            write_ready(
                args.ready_file,
                {
                    "service": service.name,
                    "pid": os.getpid(),
                    "queue": settings.queue,
                    "exchange": settings.exchange,
                    "handles": list(service.handles),
                },
            )

    try:
        await ServiceConsumer(settings, state, Failpoint.from_env()).run(stop, ready)
    finally:
        state.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {args.service} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
