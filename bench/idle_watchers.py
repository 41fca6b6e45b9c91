"""StartSaga at concurrency 8 with 0 and then with N idle WatchSaga streams open, in one
run against one orchestrator; and the orchestrator's CPU while only the watchers are open.

Watchers follow `parked_booking` sagas, which wait an hour on a flight participant
that answers after an hour; the measured starts are `travel_booking` sagas on
participants that answer at once. The target (issue 12): p50 and throughput with
1,000 watchers within 10 % of those without, and under 2 % of a core for 1,000 idle
watchers over 30 s.

    python -m bench.idle_watchers --database postgresql://postgres@127.0.0.1:5432/test \
        --watchers 1000 --starts 2000

Not part of `make test`; it starts its own participants and orchestrator and stops
them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from bench.procs import cpu_seconds
from orchestrator.core.definition import Call, SagaDefinition, Step
from orchestrator.examples import travel_booking as travel
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.support.payloads import struct
from tests.support.payloads import travel as travel_payload
from tools.processes import PARTICIPANT_SERVICES, orchestrator_process, participants_process

HOUR_MS = 3_600_000
CONCURRENCY = 8

PARKED_BOOKING = SagaDefinition(
    name="parked_booking",
    version=1,
    input_type=TravelBookingInput,
    steps=(
        Step(
            "book_flight",
            participant="slow_flight",
            action=Call(travel.FLIGHT, "BookFlight", travel.book_flight),
            compensation=Call(travel.FLIGHT, "CancelFlight", travel.cancel_flight),
            timeout=HOUR_MS / 1000,
        ),
    ),
)
DEFINITIONS = [travel.TRAVEL_BOOKING, PARKED_BOOKING]


@dataclasses.dataclass
class Starts:
    p50_ms: float
    p99_ms: float
    per_second: float


async def start_many(stub: pb_grpc.SagaOrchestratorStub, count: int, label: str) -> Starts:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(count):
        queue.put_nowait(number)

    async def worker() -> None:
        while not queue.empty():
            number = queue.get_nowait()
            began = time.perf_counter()
            await stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking",
                    correlation_id=f"{label}-{number}",
                    payload=struct(travel_payload(f"customer-{number % 50}")),
                ),
                timeout=30,
            )
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - began
    percentiles = statistics.quantiles(latencies, n=100)
    return Starts(statistics.median(latencies) * 1000, percentiles[98] * 1000, count / elapsed)


async def open_watchers(
    stub: pb_grpc.SagaOrchestratorStub, count: int
) -> list[grpc.aio.UnaryStreamCall]:
    parked = []
    for number in range(max(1, count // 100)):
        started = await stub.StartSaga(
            pb.StartSagaRequest(
                saga_type="parked_booking",
                correlation_id=f"parked-{number}",
                payload=struct(travel_payload()),
            ),
            timeout=30,
        )
        parked.append(started.saga_id)
    streams = [
        stub.WatchSaga(pb.WatchSagaRequest(saga_id=parked[n % len(parked)])) for n in range(count)
    ]
    for stream in streams:
        await stream.read()  # open: it has sent the saga's first transition
    return streams


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    fast = participants_process(workdir, PARTICIPANT_SERVICES, ["--capacity", "1000000"])
    slow = participants_process(workdir, ["flight"], ["--latency-ms", str(HOUR_MS)], name="slow")
    processes = [fast.start(), slow.start()]
    try:
        addresses = {**fast.info["services"], "slow_flight": slow.info["services"]["flight"]}
        orchestrator = orchestrator_process(
            workdir,
            args.database,
            addresses,
            env={
                "SAGA_DEFINITIONS": "bench.idle_watchers",
                "SAGA_MAX_WATCH_STREAMS": str(args.watchers + 100),
                "SAGA_LOG_LEVEL": "WARNING",
            },
        )
        processes.append(orchestrator.start())
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            await start_many(stub, 200, "warmup")
            without = await start_many(stub, args.starts, "without")
            streams = await open_watchers(stub, args.watchers)
            cpu_before = cpu_seconds(orchestrator.pid) or 0.0
            await asyncio.sleep(args.idle_seconds)
            cpu_after = cpu_seconds(orchestrator.pid) or 0.0
            with_watchers = await start_many(stub, args.starts, "with")
            for stream in streams:
                stream.cancel()
        busy = cpu_after - cpu_before
        print(f"StartSaga c={CONCURRENCY}, {args.starts} starts each")
        print(f"  0 watchers:      p50 {without.p50_ms:.1f} ms, {without.per_second:.0f}/s")
        print(
            f"  {args.watchers} watchers: p50 {with_watchers.p50_ms:.1f} ms, "
            f"{with_watchers.per_second:.0f}/s"
        )
        print(f"  p50 ratio {with_watchers.p50_ms / without.p50_ms:.2f} (target <= 1.1)")
        print(
            f"orchestrator CPU with {args.watchers} idle watchers: "
            f"{100 * busy / args.idle_seconds:.2f} % of a core over {args.idle_seconds:g} s "
            "(target < 2 %)"
        )
    finally:
        for process in reversed(processes):
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="postgresql://... (or sqlite:///...)")
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=2000)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="idle-watchers-") as workdir:
        asyncio.run(measure(args, Path(workdir)))


if __name__ == "__main__":
    main()
