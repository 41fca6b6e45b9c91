"""The loyalty participant: LoyaltyService over gRPC, applying each command once.

Run it with `python loyalty_participant.py --port 7100` (`--port 0` picks a free
port; the address is printed either way).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

from acme.loyalty.v1 import loyalty_pb2 as pb
from acme.loyalty.v1 import loyalty_pb2_grpc as pb_grpc

MAX_AWARD = 100_000


class LoyaltyService(pb_grpc.LoyaltyServiceServicer):
    """Idempotent by the command's key: a repeat gets the first reply and changes nothing.

    A revoke leaves a tombstone for the award's key, so an award that arrives
    after its own revoke (a late retry) is refused instead of applied. State is
    kept in memory to keep the example short; a real participant stores each key
    with its effect in one database transaction.
    """

    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        self.awards: dict[str, tuple[str, int]] = {}  # award id -> (customer, points)
        self.award_of_key: dict[str, str] = {}  # award command's key -> award id
        self.replies: dict[str, object] = {}  # any command's key -> its reply
        self.revoked_keys: set[str] = set()  # award keys already undone

    async def AwardPoints(self, request, context):
        key = request.context.idempotency_key
        if key in self.replies:
            return self.replies[key]
        if key in self.revoked_keys:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "award already revoked")
        if not 0 < request.points <= MAX_AWARD:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"points must be 1 to {MAX_AWARD}"
            )
        award_id = f"award-{len(self.awards) + 1}"
        self.awards[award_id] = (request.customer_id, request.points)
        self.award_of_key[key] = award_id
        balance = self.balances.get(request.customer_id, 0) + request.points
        self.balances[request.customer_id] = balance
        reply = pb.AwardPointsResponse(award_id=award_id, balance=balance)
        self.replies[key] = reply
        return reply

    async def RevokePoints(self, request, context):
        key = request.context.idempotency_key
        if key in self.replies:
            return self.replies[key]
        award_key = request.context.compensated_idempotency_key
        self.revoked_keys.add(award_key)
        award_id = request.award_id or self.award_of_key.get(award_key, "")
        award = self.awards.pop(award_id, None)
        if award is not None:
            customer_id, points = award
            self.balances[customer_id] -= points
        reply = pb.RevokePointsResponse(award_id=award_id, revoked=award is not None)
        self.replies[key] = reply
        return reply

    async def GetBalance(self, request, context):
        return pb.GetBalanceResponse(points=self.balances.get(request.customer_id, 0))


async def serve(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_LoyaltyServiceServicer_to_server(LoyaltyService(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"loyalty listening on 127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=7100, help="0 picks a free port")
    asyncio.run(serve(parser.parse_args().port))
