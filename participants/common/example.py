"""The base of the example participants: the kit's participant, plus the failure
injection that makes sagas take their failure paths (docs in participants/README.md).

Each example keeps its state in `<state_dir>/<name>.sqlite3` and answers refusals with
the ErrorInfo domain `<name>.participants.saga`. Injected latency and transient faults
come before a command is looked at; an injected failure is decided in the kit's
savepoint, so it is recorded like a business refusal. Crashes around a commit are the
kit's own failpoint (`participants.kit.failpoints`).
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from google.protobuf.message import Message

from participants import kit
from participants.common.config import ParticipantConfig
from participants.common.failures import FailureInjector

logger = logging.getLogger(__name__)


class ExampleParticipant(kit.Participant):
    """One example service configured by `config`; `seed` may read `config.capacity`."""

    def __init__(self, config: ParticipantConfig, injector: FailureInjector) -> None:
        self.config = config
        self.domain = f"{self.name}.participants.saga"
        self._injector = injector
        self._latency_s = config.latency_ms / 1000
        super().__init__(kit.open_database(f"sqlite:///{config.state_dir / self.name}.sqlite3"))

    async def before_command(
        self,
        method: str,
        request: Message,
        context: grpc.aio.ServicerContext,
        *,
        compensating: bool,
    ) -> None:
        """Actions wait `latency_ms`; a caller that gives up meanwhile cancels the call and
        the command is never applied (logged, so a test can wait for it). Then the
        configured transient faults answer UNAVAILABLE, changing nothing."""
        command = request.context  # type: ignore[attr-defined]
        if self._latency_s and not compensating:
            try:
                await asyncio.sleep(self._latency_s)
            except asyncio.CancelledError:
                logger.info(
                    "%s %s saga=%s key=%s: cancelled by the caller, not applied",
                    self.name,
                    method,
                    command.saga_id,
                    command.idempotency_key,
                )
                raise
        fault = self._injector.transient_fault(command.idempotency_key, is_action=not compensating)
        if fault is not None:
            logger.info("%s %s", self.name, fault)
            await context.abort(grpc.StatusCode.UNAVAILABLE, fault)

    def check_action(self, tx: kit.Tx, request: Message) -> None:
        self._injector.check_action(request.context.idempotency_key, request)  # type: ignore[attr-defined]
