"""Sign a customer up from your application: start loyalty_signup and wait for its end.

Run it with `python signup.py 127.0.0.1:50051 ada 1900` (address, customer, fee in cents).
"""

import sys

from orchestrator.client import SagaFailed
from orchestrator.client.sync_client import SyncSagaClient
from saga.participants.common.v1.command_pb2 import Money

from acme.loyalty.v1.loyalty_pb2 import LoyaltySignupInput

address, customer, fee = sys.argv[1], sys.argv[2], int(sys.argv[3])
member = LoyaltySignupInput(
    customer_id=customer, welcome_points=500, fee=Money(currency_code="EUR", amount_minor=fee)
)
with SyncSagaClient(address) as client:
    try:
        saga = client.execute(member, correlation_id=f"signup-{customer}", timeout=60)
        print(f"signed up: saga {saga.saga_id}")
    except SagaFailed as failed:
        print(f"not signed up: {failed.failure_reason}")
