"""StartSaga over HTTP/JSON against gRPC, side by side on one orchestrator (`make bench-http`).

One `saga serve --http-listen` process on SQLite (or SAGA_DATABASE_URL) with the example
participants; StartSaga of a travel booking, alternately over gRPC and over
`POST /v1/sagas`: the p50 latency at concurrency 1 (calls alternating one by one), then
throughput at concurrency 64 (runs alternating, six of each).
Targets (issue 29): HTTP's c=1 p50 within 1.3x gRPC's, its c=64 throughput at least
0.8x gRPC's. The figures depend on the machine's load: report it with them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
from google.protobuf import json_format, struct_pb2

from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tools.processes import PARTICIPANT_SERVICES, orchestrator_process, participants_process

PAYLOAD = {
    "customer_id": "bench", "traveller_name": "Ada", "flight_number": "LH400",
    "hotel_id": "berlin-central", "nights": 1, "car_location": "BER", "car_class": "compact",
    "car_days": 1, "amount": {"currency_code": "EUR", "amount_minor": 1000},
}  # fmt: skip
Start = Callable[[], Awaitable[None]]


async def _run(start: Start, calls: int, concurrency: int) -> tuple[list[float], float]:
    """Latencies of `calls` starts made by `concurrency` workers, and the wall time."""
    latencies: list[float] = []
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            began = time.perf_counter()
            await start()
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - began


ROUNDS = 6
"""The c=64 runs alternate between the transports this many times each, so a neighbour's
load falls on both alike (the c=1 calls alternate call by call)."""


async def _interleaved(
    starts: dict[str, Start], calls_c1: int, calls_c64: int
) -> dict[str, dict[str, float]]:
    """Each transport's c=1 p50 (ms) and c=64 throughput (starts a second)."""
    latencies: dict[str, list[float]] = {name: [] for name in starts}
    for index in range(calls_c1 * len(starts)):
        name = list(starts)[index % len(starts)]
        began = time.perf_counter()
        await starts[name]()
        latencies[name].append(time.perf_counter() - began)
    seconds = dict.fromkeys(starts, 0.0)
    per_round = max(1, calls_c64 // ROUNDS)
    for _ in range(ROUNDS):
        for name, start in starts.items():
            seconds[name] += (await _run(start, per_round, 64))[1]
    return {
        name: {
            "p50_ms": statistics.median(latencies[name]) * 1000,
            "per_s": per_round * ROUNDS / seconds[name],
        }
        for name in starts
    }


async def bench(calls_c1: int, calls_c64: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        participants = participants_process(workdir, PARTICIPANT_SERVICES, []).start()
        database = os.environ.get("SAGA_DATABASE_URL") or f"sqlite:///{workdir / 's.sqlite3'}"
        server = orchestrator_process(
            workdir,
            database,
            participants.info["services"],
            extra_args=["--http-listen", "127.0.0.1:0", "--max-sagas-in-flight", "100000"],
        )
        try:
            server.start()
            await _compare(
                server.address, server.info["console_url"].rstrip("/"), calls_c1, calls_c64
            )
        finally:
            server.stop()
            participants.stop()


async def _compare(address: str, base: str, calls_c1: int, calls_c64: int) -> None:
    payload = struct_pb2.Struct()
    json_format.ParseDict(PAYLOAD, payload)
    connector = aiohttp.TCPConnector(limit=128)
    async with (
        grpc.aio.insecure_channel(address) as channel,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        stub = pb_grpc.SagaOrchestratorStub(channel)

        async def over_grpc() -> None:
            await stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking", correlation_id=uuid.uuid4().hex, payload=payload
                ),
                timeout=30,
            )

        async def over_http() -> None:
            body = {
                "sagaType": "travel_booking",
                "correlationId": uuid.uuid4().hex,
                "payload": PAYLOAD,
            }
            async with session.post(f"{base}/v1/sagas", json=body) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {await response.text()}")

        for start in (over_grpc, over_http):
            await _run(start, 50, 8)  # warm both paths
        load = os.getloadavg()
        print(
            f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
            f"({os.cpu_count()} cores)"
        )
        starts: dict[str, Start] = {"grpc": over_grpc, "http": over_http}
        figures = await _interleaved(starts, calls_c1, calls_c64)
        for name, figure in figures.items():
            print(f"{name:5} c=1 p50 {figure['p50_ms']:.2f} ms   c=64 {figure['per_s']:.0f}/s")
        ratio_p50 = figures["http"]["p50_ms"] / figures["grpc"]["p50_ms"]
        ratio_rate = figures["http"]["per_s"] / figures["grpc"]["per_s"]
        print(
            f"HTTP/gRPC: c=1 p50 {ratio_p50:.2f}x (target <= 1.3x), "
            f"c=64 throughput {ratio_rate:.2f}x (target >= 0.8x)"
        )
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls-c1", type=int, default=300)
    parser.add_argument("--calls-c64", type=int, default=3000)
    args = parser.parse_args()
    asyncio.run(bench(args.calls_c1, args.calls_c64))


if __name__ == "__main__":
    main()
