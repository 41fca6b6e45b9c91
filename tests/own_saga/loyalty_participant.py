"""The loyalty participant: LoyaltyService over gRPC, its state in its own database.

Run it with `python loyalty_participant.py --port 7100 --database sqlite:///loyalty.db`
(`--port 0` picks a free port; the address is printed either way). The participant kit
applies each command once, inside the same transaction as the business write.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
from participants.kit import Participant, Rejected, Tx, action, compensation, open_database

from acme.loyalty.v1 import loyalty_pb2 as pb
from acme.loyalty.v1 import loyalty_pb2_grpc as pb_grpc

MAX_AWARD = 100_000
AWARDS = (
    "CREATE TABLE IF NOT EXISTS awards (award_id TEXT PRIMARY KEY, customer_id TEXT, points BIGINT)"
)


class LoyaltyService(Participant, pb_grpc.LoyaltyServiceServicer):
    @action
    def AwardPoints(self, tx: Tx, request: pb.AwardPointsRequest) -> pb.AwardPointsResponse:
        if not 0 < request.points <= MAX_AWARD:
            raise Rejected("INVALID_POINTS", f"points must be 1 to {MAX_AWARD}")
        award_id = f"award-{request.context.idempotency_key}"
        tx.execute(
            "INSERT INTO awards VALUES (%s, %s, %s)",
            (award_id, request.customer_id, request.points),
        )
        return pb.AwardPointsResponse(
            award_id=award_id, balance=self.balance(tx, request.customer_id)
        )

    @compensation(of="AwardPoints")
    def RevokePoints(
        self, tx: Tx, request: pb.RevokePointsRequest, awarded: pb.AwardPointsResponse | None
    ) -> pb.RevokePointsResponse:
        if awarded is None:  # never awarded: nothing to undo
            return pb.RevokePointsResponse(revoked=False)
        tx.execute("DELETE FROM awards WHERE award_id = %s", (awarded.award_id,))
        return pb.RevokePointsResponse(award_id=awarded.award_id, revoked=True)

    async def GetBalance(
        self, request: pb.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBalanceResponse:
        with self.database.transaction() as tx:
            return pb.GetBalanceResponse(points=self.balance(tx, request.customer_id))

    @staticmethod
    def balance(tx: Tx, customer_id: str) -> int:
        row = tx.one(
            "SELECT COALESCE(SUM(points), 0) FROM awards WHERE customer_id = %s", (customer_id,)
        )
        return int(row[0]) if row else 0


async def serve(port: int, database_url: str) -> None:
    database = open_database(database_url)
    database.create(AWARDS)
    server = grpc.aio.server()
    pb_grpc.add_LoyaltyServiceServicer_to_server(LoyaltyService(database), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"loyalty listening on 127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=7100, help="0 picks a free port")
    parser.add_argument(
        "--database", default="sqlite:///loyalty.db", help="sqlite:/// or postgresql:// URL"
    )
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.database))
