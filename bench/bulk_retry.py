"""A bulk retry of many stuck sagas, and what it costs the sagas started meanwhile.

    python -m bench.bulk_retry [--database postgres|sqlite] [--sagas 1000]
        [--page-size 100] [--trickle-per-second 20]

One orchestrator (`saga serve`, the failure-policy test definitions: quick retries) on
a throwaway PostgreSQL database (or a new SQLite file), and the example participants:
the flight refuses every NO-FLY booking, and the hotel refuses every cancellation, so
`--sagas` sagas (started in StartSagas batches) end FAILED waiting for an operator at
book_hotel's compensation. Then the hotel comes back and the sagas stuck on it are
retried with RetrySagas, `--page-size` per call, following the page tokens to the end,
while a trickle of new sagas (StartSaga, `--trickle-per-second`) runs alongside.

Printed: the bulk retry's wall time (first call sent to last page answered) and per
call, the time until every retried saga has FAILED after compensating, and the
StartSaga latency of the trickle during the bulk retry against before it (p50, p99).
The 1-minute load average and the CPU count are printed with it: on a shared machine
the before/during ratio says more than the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import grpc

from bench.harness import DEFAULT_POSTGRES_URL, POSTGRES_URL_ENV
from bench.pg import Admin, database_url
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.support.payloads import struct, travel
from tools.processes import ChildProcess, orchestrator_process, participants_process

DEFINITIONS = {"SAGA_DEFINITIONS": "tests.support.policy_sagas", "SAGA_LEASE_SECONDS": "5"}
STUCK_ON_HOTEL = pb.BulkSagaFilter(participant="hotel", needs_intervention=True)
WAIT_SECONDS = 600.0
"""The longest the bench waits for the sagas to get stuck, or to settle after the retry."""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency_line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: no starts"
    return (
        f"{name}: {len(values)} starts, p50 {1000 * statistics.median(values):.1f} ms, "
        f"p99 {1000 * percentile(values, 0.99):.1f} ms, max {1000 * max(values):.1f} ms"
    )


@contextlib.contextmanager
def database(kind: str, server_url: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'saga.sqlite3'}"
        return
    admin = Admin(server_url)
    name = admin.create_database()
    try:
        yield database_url(server_url, name)
    finally:
        admin.drop_database(name)
        admin.close()


def participant(workdir: Path, service: str, args: list[str], port: str = "0") -> ChildProcess:
    flags = ["--capacity", "1000000", *args]
    if port != "0":
        flags += ["--port", port]
    return participants_process(workdir, [service], flags, name=f"{service}-{port}")


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> float:
    """Seconds until `check()` is true, polled every 0.2 s, at most WAIT_SECONDS."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > WAIT_SECONDS:
            raise TimeoutError(what)
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def matching(stub: pb_grpc.SagaOrchestratorStub, where: pb.BulkSagaFilter) -> int:
    reply = await stub.RetrySagas(
        pb.RetrySagasRequest(filter=where, dry_run=True, reason="count", requested_by="bench"),
        timeout=60,
    )
    return int(reply.matched_count)


async def trickle(
    stub: pb_grpc.SagaOrchestratorStub, per_second: float, latencies: list[tuple[float, float]]
) -> None:
    """StartSaga at a steady rate until cancelled: (send time, latency) per start."""
    n = 0
    while True:
        n += 1
        sent = time.monotonic()
        await stub.StartSaga(
            pb.StartSagaRequest(
                saga_type="retry_probe",
                correlation_id=f"trickle-{n}",
                payload=struct(travel(f"trickle-{n}")),
            ),
            timeout=30,
        )
        latencies.append((sent, time.monotonic() - sent))
        await asyncio.sleep(max(0.0, 1 / per_second - (time.monotonic() - sent)))


async def bench(args: argparse.Namespace, workdir: Path, url: str) -> None:
    hotel = participant(workdir, "hotel", ["--compensation-failures", "-1"]).start()
    flight = participant(workdir, "flight", ["--fail-ids", "NO-FLY"]).start()
    payment = participant(workdir, "payment", []).start()  # named by the definitions
    addresses = {"hotel": hotel.address, "flight": flight.address, "payment": payment.address}
    orchestrator = orchestrator_process(
        workdir,
        url,
        addresses,
        env=DEFINITIONS,
        extra_args=["--max-sagas-in-flight", str(10 * args.sagas)],
    ).start()
    try:
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            for first in range(0, args.sagas, 500):
                batch = [
                    pb.StartSagaRequest(
                        saga_type="retry_probe",
                        correlation_id=f"stuck-{n}",
                        payload=struct(travel(f"stuck-{n}", flight="NO-FLY")),
                    )
                    for n in range(first, min(args.sagas, first + 500))
                ]
                await stub.StartSagas(pb.StartSagasRequest(requests=batch), timeout=120)

            async def all_stuck() -> bool:
                return await matching(stub, STUCK_ON_HOTEL) == int(args.sagas)

            stuck_after = await wait_until(all_stuck, "the sagas to get stuck")
            print(f"{args.sagas} sagas stuck on the hotel after {stuck_after:.1f} s")

            port = hotel.address.rsplit(":", 1)[1]
            hotel.stop()
            hotel = participant(workdir, "hotel", [], port).start()

            latencies: list[tuple[float, float]] = []
            trickling = asyncio.create_task(trickle(stub, args.trickle_per_second, latencies))
            await asyncio.sleep(5)  # the trickle alone: the baseline
            load = os.getloadavg()[0]
            began = time.monotonic()
            calls: list[float] = []
            retried = refused = 0
            token = ""
            while True:
                sent = time.monotonic()
                page = await stub.RetrySagas(
                    pb.RetrySagasRequest(
                        filter=STUCK_ON_HOTEL,
                        reason="hotel back",
                        requested_by="bench",
                        page_size=args.page_size,
                        page_token=token,
                    ),
                    timeout=300,
                )
                calls.append(time.monotonic() - sent)
                for result in page.results:
                    if result.WhichOneof("outcome") == "status":
                        retried += 1
                    else:
                        refused += 1
                token = page.next_page_token
                if not token:
                    break
            ended = time.monotonic()

            async def settled() -> bool:
                compensating = pb.BulkSagaFilter(status=pb.SAGA_STATUS_COMPENSATING)
                return await matching(stub, compensating) == 0

            settle = await wait_until(settled, "the retried sagas to settle")
            await asyncio.sleep(2)  # the trickle alone again, after
            trickling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trickling
            left = await matching(stub, STUCK_ON_HOTEL)
    finally:
        orchestrator.stop()
        for process in (hotel, flight, payment):
            process.stop()

    before = [latency for sent, latency in latencies if sent < began]
    during = [latency for sent, latency in latencies if began <= sent <= ended]
    print(f"machine: {os.cpu_count()} CPUs, 1-minute load average {load:.2f} when the retry began")
    print(
        f"bulk retry: {retried} retried, {refused} refused, {len(calls)} calls of up to "
        f"{args.page_size}, {ended - began:.2f} s in all ({args.sagas / (ended - began):.0f} "
        f"sagas/s); per call p50 {statistics.median(calls):.2f} s, max {max(calls):.2f} s"
    )
    print(f"every retried saga FAILED after compensating {settle:.1f} s later; {left} still stuck")
    print(latency_line("StartSaga before the retry", before))
    print(latency_line("StartSaga during the retry", during))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--postgres-url", default=os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL
    )
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--trickle-per-second", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bulk-retry-") as directory:
        workdir = Path(directory)
        with database(args.database, args.postgres_url, workdir) as url:
            asyncio.run(bench(args, workdir, url))


if __name__ == "__main__":
    main()
