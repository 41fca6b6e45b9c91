"""What a secured call costs: StartSaga latency at concurrency 1 over plaintext, TLS, and
mutual TLS with a bearer token and auth on (one orchestrator per mode, SQLite store).

`.venv/bin/python -m bench.security_latency [CALLS]` prints p50 and p90 per mode and the
ratios to plaintext. One run on a shared machine: read the ratios, not the milliseconds.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from google.protobuf import struct_pb2

from orchestrator.client import SagaClient
from orchestrator.security.auth import token_digest
from orchestrator.security.tls import ClientTls
from saga.v1 import orchestrator_pb2 as pb
from tools.certs import make_ca, new_token
from tools.processes import PARTICIPANT_SERVICES, orchestrator_process, participants_process

WARM_UP = 40


def _payload(number: int) -> struct_pb2.Struct:
    payload = struct_pb2.Struct()
    payload.update(
        {
            "customer_id": f"customer-{number}",
            "traveller_name": "Ada Lovelace",
            "flight_number": "LH400",
            "hotel_id": "berlin-central",
            "nights": 1,
            "car_location": "BER",
            "car_class": "compact",
            "car_days": 1,
            "amount": {"currency_code": "EUR", "amount_minor": 1_000},
        }
    )
    return payload


async def _latencies(
    address: str, tls: ClientTls | None, token: str | None, calls: int
) -> list[float]:
    async with SagaClient(address, 10, tls=tls, token=token) as client:
        seconds = []
        for number in range(calls + WARM_UP):
            start = time.perf_counter()
            await client.stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking",
                    correlation_id=f"latency-{number}",
                    payload=_payload(number),
                ),
                timeout=10,
            )
            seconds.append(time.perf_counter() - start)
        return seconds[WARM_UP:]


def main(calls: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="saga-security-latency-"))
    authority = make_ca(workdir)
    server, caller = authority.issue("server", workdir), authority.issue("caller", workdir)
    token = new_token()
    auth_file = workdir / "auth.toml"
    auth_file.write_text(
        f'[[caller]]\nname = "caller"\nroles = ["client"]\ntoken_sha256 = "{token_digest(token)}"\n'
    )
    tls_args = ["--tls-cert", str(server.cert), "--tls-key", str(server.key)]
    modes: dict[str, tuple[list[str], ClientTls | None, str | None]] = {
        "plaintext": ([], None, None),
        "tls": (tls_args, ClientTls(authority.cert_file), None),
        "mtls+token": (
            [*tls_args, "--tls-client-ca", str(authority.cert_file), "--auth-file", str(auth_file)],
            ClientTls(authority.cert_file, caller.cert, caller.key),
            token,
        ),
    }
    participants = participants_process(workdir, PARTICIPANT_SERVICES).start()
    p50: dict[str, float] = {}
    try:
        for mode, (args, tls, bearer) in modes.items():
            store = f"sqlite:///{workdir / mode / 'saga.sqlite3'}"
            orchestrator = orchestrator_process(
                workdir / mode, store, participants.info["services"]
            )
            orchestrator.argv += args
            orchestrator.start()
            try:
                seconds = asyncio.run(_latencies(orchestrator.address, tls, bearer, calls))
            finally:
                orchestrator.stop()
            p50[mode] = statistics.median(seconds) * 1000
            p90 = sorted(seconds)[int(len(seconds) * 0.9)] * 1000
            print(f"{mode:<11} p50 {p50[mode]:6.2f} ms  p90 {p90:6.2f} ms  ({calls} calls)")
    finally:
        participants.stop()
    for mode, value in p50.items():
        print(f"{mode:<11} {value / p50['plaintext']:.2f}x plaintext p50")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
