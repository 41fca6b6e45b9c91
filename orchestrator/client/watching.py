"""Reading one saga as it runs: get it, ride its WatchSaga stream (reopened after the
last seq seen when the orchestrator is lost), wait for its end, or for many at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterable

import grpc

from orchestrator.client.connection import (
    RECONNECT_CODES,
    WATCH_RECONNECT_SECONDS,
    Reconnection,
    SagaChannel,
    in_namespace,
)
from orchestrator.client.errors import (
    DeadlineExceeded,
    StreamLost,
    Unavailable,
    client_error,
    describe_orchestrator_error,
)
from saga.v1 import orchestrator_pb2 as pb

TERMINAL_SAGA_STATUSES = frozenset({pb.SAGA_STATUS_COMPLETED, pb.SAGA_STATUS_FAILED})
WAIT_ALL_STREAMS = 64
"""WatchSaga streams `wait_all` keeps open at once."""


def _ignore(_: object) -> None:
    return None


class SagaWatching(SagaChannel):
    """GetSaga and the WatchSaga stream, for SagaClient (see there)."""

    async def get_saga(self, saga_id: str) -> pb.Saga:
        """The saga with its steps, each completed step's reply, and its output or failure."""
        saga: pb.Saga = await self._call("GetSaga", pb.GetSagaRequest(saga_id=saga_id))
        return saga

    get = get_saga

    # --- watching -----------------------------------------------------------------------

    async def watch(
        self,
        saga_id: str,
        *,
        after_seq: int = 0,
        within: float | None = None,
        reconnect_for: float = WATCH_RECONNECT_SECONDS,
        on_notice: Callable[[str], None] = _ignore,
    ) -> AsyncGenerator[pb.WatchSagaResponse, None]:
        """The saga's transitions after `after_seq` as they are committed; the last
        response carries the ended saga (`saga`). A lost stream is reopened after the last
        seq seen, with backoff, for at most `reconnect_for` seconds of trying (then
        StreamLost); `on_notice` hears of it, and hears "" once the stream is back.
        DeadlineExceeded when the saga has not ended within `within` seconds."""
        clock = Reconnection(within, reconnect_for)
        last = after_seq
        while True:
            remaining = clock.remaining()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(f"saga {saga_id} did not finish within {within:g}s")
            try:
                if clock.lost_since is not None:
                    await self.stub.GetSaga(  # are we back? (under the call deadline)
                        in_namespace(pb.GetSagaRequest(saga_id=saga_id), self.namespace),
                        timeout=self.timeout,
                    )
                    clock.back()
                    on_notice("")
                request = pb.WatchSagaRequest(saga_id=saga_id, after_seq=last)
                stream = self.stub.WatchSaga(
                    in_namespace(request, self.namespace), timeout=remaining
                )
                async for response in stream:
                    if response.transition.seq <= last:
                        continue
                    last = response.transition.seq
                    yield response
                    if response.HasField("saga"):
                        return
                saga = await self.get_saga(saga_id)
                if saga.status in TERMINAL_SAGA_STATUSES:  # an older server: no final saga
                    yield pb.WatchSagaResponse(saga=saga)
                    return
                cause = "the stream ended before the saga did"
            except grpc.RpcError as error:
                if error.code() not in RECONNECT_CODES:
                    raise client_error(error, self.address, self.timeout) from None
                if clock.expired():
                    raise DeadlineExceeded(
                        f"saga {saga_id} did not finish within {within:g}s"
                    ) from None
                cause = describe_orchestrator_error(error, self.address, self.timeout)
            delay = clock.next_pause()
            if delay is None:
                raise StreamLost(saga_id, last, cause, reconnect_for)
            on_notice(f"connection lost ({cause}); reconnecting after seq {last} in {delay:g}s")
            await asyncio.sleep(delay)
            await self.reconnect()

    async def follow(
        self,
        saga_id: str,
        *,
        after_seq: int = 0,
        within: float | None = None,
        reconnect_for: float = WATCH_RECONNECT_SECONDS,
        on_transition: Callable[[pb.Transition], None] = _ignore,
        on_notice: Callable[[str], None] = _ignore,
    ) -> pb.Saga:
        """Ride `watch` until the saga is COMPLETED or FAILED; return it as GetSaga shows it."""
        async for response in self.watch(
            saga_id,
            after_seq=after_seq,
            within=within,
            reconnect_for=reconnect_for,
            on_notice=on_notice,
        ):
            if response.HasField("transition"):
                on_transition(response.transition)
            if response.HasField("saga"):
                return response.saga
        raise StreamLost(saga_id, after_seq, "the watch ended without the saga", reconnect_for)

    async def wait(self, saga_id: str, within: float) -> pb.Saga:
        """The saga once it is COMPLETED or FAILED; DeadlineExceeded after `within` seconds."""
        return await self.follow(saga_id, within=within, reconnect_for=within)

    async def wait_all(
        self, saga_ids: Iterable[str], within: float, *, streams: int = WAIT_ALL_STREAMS
    ) -> tuple[dict[str, pb.Saga], bool]:
        """Each saga once it is COMPLETED or FAILED, or as it stands after `within`
        seconds (absent if even that cannot be read), and whether all of them ended.
        At most `streams` watches are open at once."""
        deadline = time.monotonic() + within
        gate = asyncio.Semaphore(streams)
        latest: dict[str, pb.Saga] = {}

        async def settle(saga_id: str) -> bool:
            async with gate:
                try:
                    latest[saga_id] = await self.wait(saga_id, deadline - time.monotonic())
                    return True
                except (DeadlineExceeded, Unavailable):
                    pass
            with contextlib.suppress(DeadlineExceeded, Unavailable):
                latest[saga_id] = await self.get_saga(saga_id)
            return False

        ended = await asyncio.gather(*(settle(saga_id) for saga_id in saga_ids))
        return latest, all(ended)
