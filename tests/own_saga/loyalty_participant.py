"""The loyalty participant: LoyaltyService over gRPC, its state in its own database.

Run it with `python loyalty_participant.py --port 7100 --database sqlite:///loyalty.db`.
"""

from participants.kit import Participant, Rejected, Tx, action, compensation, query, run

from acme.loyalty.v1 import loyalty_pb2 as pb


class LoyaltyService(Participant):
    service = "acme.loyalty.v1.LoyaltyService"
    schema = ("CREATE TABLE IF NOT EXISTS awards (award_id TEXT, customer_id TEXT, points BIGINT)",)

    @action
    def AwardPoints(self, tx: Tx, request: pb.AwardPointsRequest) -> pb.AwardPointsResponse:
        if not 0 < request.points <= 100_000:
            raise Rejected("INVALID_POINTS", "points must be 1 to 100000")
        award_id = f"award-{request.context.idempotency_key}"
        tx.execute(
            "INSERT INTO awards VALUES (%s, %s, %s)",
            (award_id, request.customer_id, request.points),
        )
        return pb.AwardPointsResponse(award_id=award_id, balance=balance(tx, request.customer_id))

    @compensation(of="AwardPoints")
    def RevokePoints(
        self, tx: Tx, request: pb.RevokePointsRequest, awarded: pb.AwardPointsResponse | None
    ) -> pb.RevokePointsResponse:
        if awarded is None:  # never awarded: nothing to undo
            return pb.RevokePointsResponse(revoked=False)
        tx.execute("DELETE FROM awards WHERE award_id = %s", (awarded.award_id,))
        return pb.RevokePointsResponse(award_id=awarded.award_id, revoked=True)

    @query
    def GetBalance(self, tx: Tx, request: pb.GetBalanceRequest) -> pb.GetBalanceResponse:
        return pb.GetBalanceResponse(points=balance(tx, request.customer_id))


def balance(tx: Tx, customer_id: str) -> int:
    row = tx.one(
        "SELECT COALESCE(SUM(points), 0) FROM awards WHERE customer_id = %s", (customer_id,)
    )
    return int(row[0]) if row else 0


if __name__ == "__main__":
    run(LoyaltyService, port=7100, database="sqlite:///loyalty.db")
