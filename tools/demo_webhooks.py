"""The demo's webhooks: a receiver process on 127.0.0.1 (`tools.webhook_receiver`) that
checks each delivery's signature with the orchestrator's verifier, an endpoint registered
for it through SagaWebhooks (as `saga webhooks create` does), and the deliveries shown
once every saga has ended.

The orchestrator runs with `--webhooks --webhooks-allow-private`: the receiver is on
loopback, which production refuses.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from orchestrator.client.webhooks import WebhooksClient
from saga.v1 import webhooks_pb2 as wpb
from tools.demo_security import DemoSecurity
from tools.processes import ChildProcess

SERVE_FLAGS = ["--webhooks", "--webhooks-allow-private"]
EVENT_TYPES = ["saga.completed", "saga.failed"]
"""The endpoint takes each saga's end: one delivery per saga."""
WAIT_SECONDS = 30.0


class DemoWebhooks:
    """The receiver process and the endpoint registered for it."""

    def __init__(self, workdir: Path) -> None:
        self.secret_file = workdir / "webhook-secret"
        self.output = workdir / "webhook-receiver.out"
        self.receiver = ChildProcess(
            "webhook-receiver",
            [
                sys.executable,
                "-m",
                "tools.webhook_receiver",
                "--secret-file",
                str(self.secret_file),
            ],
            workdir,
            stdout=self.output,
        )

    def start_receiver(self) -> str:
        self.receiver.start()
        return str(self.receiver.info["address"])

    def register(self, address: str, security: DemoSecurity) -> str:
        """Registers the receiver as an endpoint; its secret goes to the receiver's file."""

        async def create() -> wpb.CreateWebhookEndpointResponse:
            token = security.tokens.get("operator")
            async with WebhooksClient(address, tls=security.client_tls(), token=token) as client:
                endpoint = wpb.WebhookEndpoint(
                    url=f"{self.receiver.info['address']}/hooks",
                    description="make demo",
                    event_types=EVENT_TYPES,
                )
                return await client.create(endpoint)

        created = asyncio.run(create())
        self.secret_file.write_text(created.secret + "\n")
        self.secret_file.chmod(0o600)
        return created.endpoint.endpoint_id

    def show(self, sagas: int) -> list[str]:
        """Prints the receiver's lines once it has one per saga (bounded); the problems."""
        deadline = time.monotonic() + WAIT_SECONDS
        lines: list[str] = []
        while time.monotonic() < deadline:
            text = self.output.read_text() if self.output.exists() else ""
            lines = [line for line in text.splitlines() if line.startswith("received ")]
            if len(lines) >= sagas:
                break
            time.sleep(0.1)
        print(f"\nwebhooks: the receiver got {len(lines)} deliveries")
        for line in lines:
            print(f"  {line}")
        problems = []
        if len(lines) < sagas:
            problems.append(f"webhooks: {len(lines)} of {sagas} deliveries in {WAIT_SECONDS:g}s")
        problems += [f"webhooks: {line}" for line in lines if "signature verified" not in line]
        return problems

    def stop(self) -> None:
        self.receiver.stop()
