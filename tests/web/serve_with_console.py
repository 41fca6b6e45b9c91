"""An orchestrator process with the web console, for the console's browser tests.

Built as `saga serve` builds the orchestrator (store, registry, executor, servicer,
gRPC server), plus `start_web_console` on another port: the wiring that
`saga serve --http-listen HOST:PORT` adds. Writes a ready file with both addresses
and runs until SIGTERM.

    python tests/web/serve_with_console.py --database URL --participant flight=HOST:PORT \
        --definitions orchestrator.examples [--tokens FILE] --ready-file FILE
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from pathlib import Path

from orchestrator.commands import ParticipantClient
from orchestrator.executor import Executor
from orchestrator.loading import load_definitions
from orchestrator.registry import Registry
from orchestrator.server import SHUTDOWN_GRACE_SECONDS, create_server
from orchestrator.service import SagaOrchestratorService
from orchestrator.store import open_store
from orchestrator.web import Identity, bearer_tokens, start_web_console


def identities_of(path: str) -> dict[str, Identity]:
    """`{"<sha256 of token>": {"name": ..., "roles": [...]}}` as the authenticator's table."""
    table = json.loads(Path(path).read_text())
    return {
        digest: Identity(item["name"], frozenset(item["roles"])) for digest, item in table.items()
    }


def write_ready_file(path: str, address: str, console_url: str) -> None:
    """Atomically: the test waits for this file and reads both addresses from it."""
    ready = {"address": address, "console_url": console_url, "pid": os.getpid()}
    Path(f"{path}.tmp").write_text(json.dumps(ready))
    os.replace(f"{path}.tmp", path)


async def run(args: argparse.Namespace) -> None:
    addresses = dict(entry.split("=", 1) for entry in args.participant)
    registry = Registry(load_definitions(args.definitions.split(",")))
    participants = ParticipantClient(addresses)
    participants.check_addresses(registry.participants)
    store = open_store(args.database)
    await store.open()
    executor = Executor(store, registry, participants)
    servicer = SagaOrchestratorService(registry, executor, store)
    server, port, _ = create_server("127.0.0.1:0", servicer)
    await server.start()
    console = await start_web_console(
        "127.0.0.1",
        0,
        servicer,
        registry,
        authenticate=bearer_tokens(identities_of(args.tokens)) if args.tokens else None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    executor.resume_unfinished()
    write_ready_file(args.ready_file, f"127.0.0.1:{port}", console.url)
    await stop.wait()
    await console.stop()
    await server.stop(SHUTDOWN_GRACE_SECONDS)
    await executor.stop()
    await participants.close()
    with contextlib.suppress(Exception):
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--participant", action="append", default=[])
    parser.add_argument("--definitions", default="orchestrator.examples")
    parser.add_argument("--tokens", default="")
    parser.add_argument("--ready-file", required=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
