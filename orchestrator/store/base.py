"""The one interface every saga store implements.

The write path takes whole `SagaCommit` units, never single columns, and every
write goes through group commit (`group_commit.py`): the transitions of many
concurrent sagas are applied in one transaction, with no change to the executor.
Every method is a coroutine; a store that cannot reach its database raises
`StoreUnavailable` and has written nothing.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from orchestrator.core.errors import SagaError
from orchestrator.core.events import (
    DeadEvent,
    DeadLetter,
    EventSink,
    OutboxEvent,
    PartitionClaim,
    PartitionLease,
    PendingEvent,
    Settlement,
    SinkBacklog,
)
from orchestrator.core.records import (
    CreateSagaResult,
    Lease,
    LockAttempt,
    LockBlocker,
    LockHolding,
    NewSaga,
    PagePosition,
    SagaCommit,
    SagaFilter,
    SagaRecord,
    StepRecord,
    StoredSaga,
    TransitionRecord,
)
from orchestrator.store.group_commit import GroupCommit, write_isolated
from orchestrator.store.tracked_base import TrackedEventStore

Made = TypeVar("Made", bound=NewSaga | SagaCommit | None)
"""What a lock path's callback writes: a new saga, a commit, or nothing."""


class Store(TrackedEventStore, abc.ABC):
    """Durable home of sagas, their steps and their transition log."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema to the latest version."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The schema version recorded in the database."""

    @abc.abstractmethod
    async def write(
        self, new_sagas: Sequence[NewSaga], commits: Sequence[SagaCommit]
    ) -> list[CreateSagaResult]:
        """Insert new sagas, then apply commits, all in one transaction: all or nothing.

        A new saga whose idempotency key is already taken (also by an earlier saga
        of the same call) writes nothing and yields the existing saga with
        `created=False`; results come in the order of `new_sagas`. For each commit
        the saga row is updated only if its version equals `expected_version`;
        otherwise `StaleSagaVersion` is raised and nothing of the call is written.
        Step rows are upserted; transitions appended (a seq already present is
        StaleSagaVersion too: two writers).
        """

    async def create_saga(
        self,
        saga: SagaRecord,
        steps: Sequence[StepRecord],
        transitions: Sequence[TransitionRecord],
        lease: Lease | None = None,
    ) -> CreateSagaResult:
        """Insert a new saga with its steps and first log rows (see `write`).

        With `lease`, the new saga is claimed by its owner in the same transaction,
        so no other replica takes it up. Goes through group commit: it may share a
        transaction with other sagas' writes, and returns once that is committed.
        """
        return await self.open_saga(NewSaga(saga, tuple(steps), tuple(transitions), lease))

    async def open_saga(self, new: NewSaga) -> CreateSagaResult:
        """`create_saga` of a whole `NewSaga` (a tracked instance carries the rows of the
        events that started it, `NewSaga.ingested`), through group commit."""
        result = await self._group_commit().create(new)
        self._written(self._sinks_of([new]))
        return result

    async def create_sagas(
        self, new_sagas: Sequence[NewSaga]
    ) -> list[CreateSagaResult | SagaError]:
        """Insert a batch of new sagas (StartSagas) in one transaction of its own; results
        in the order of `new_sagas` (a taken key, also one taken by an earlier saga of the
        batch, answers that saga with `created=False`; see `write`).

        One saga cannot fail the others: a saga the database refuses is answered with its
        own error (`DataRefused`) and the rest are stored without it (`write_isolated`); an
        error of the database answers each saga it failed (StoreUnavailable). An error that
        is not a SagaError is raised once every saga is settled.

        Not through group commit: the batch is already one, and queueing its hundreds of
        sagas as one item would hold back the single writes queued behind it.
        """
        outcomes: dict[int, CreateSagaResult | Exception] = {}

        async def write(items: Sequence[tuple[int, NewSaga]]) -> list[CreateSagaResult]:
            return await self.write([new for _, new in items], ())

        def answer(
            items: Sequence[tuple[int, NewSaga]], results: Sequence[CreateSagaResult | Exception]
        ) -> None:
            outcomes.update(zip((index for index, _ in items), results, strict=True))

        if new_sagas:
            await write_isolated(write, list(enumerate(new_sagas)), answer)
        self._written(self._sinks_of(new_sagas))
        answers: list[CreateSagaResult | SagaError] = []
        for index in range(len(new_sagas)):
            outcome = outcomes[index]
            if isinstance(outcome, Exception) and not isinstance(outcome, SagaError):
                raise outcome
            answers.append(outcome)
        return answers

    async def commit(self, commits: Sequence[SagaCommit]) -> None:
        """Apply commits of one or more sagas (see `write`); returns once they are
        committed, possibly in one transaction with other sagas' writes."""
        await self._group_commit().commit(commits)
        self._written(self._sinks_of(commits))

    _group: GroupCommit | None = None
    _written_hooks: tuple[Callable[[frozenset[str]], None], ...] = ()

    @property
    def event_sinks(self) -> tuple[EventSink, ...]:
        """The sinks this store writes outbox rows for."""
        return ()

    def on_written(self, hook: Callable[[frozenset[str]], None]) -> None:
        """Call `hook(sinks)` (cheap, synchronous) after this process's commits and new
        sagas are written, with the names of the event sinks they gave outbox rows: the
        event relay's in-process wake-up. A write that gave none calls nothing."""
        self._written_hooks = (*self._written_hooks, hook)

    def _written(self, sinks: Iterable[str]) -> None:
        names = frozenset(sinks)
        if names:
            for hook in self._written_hooks:
                hook(names)

    def _written_by(
        self, make: Callable[[LockAttempt], Made]
    ) -> tuple[Callable[[LockAttempt], Made], Callable[[], None]]:
        """For the lock paths, whose writes are made by a callback inside the store's
        transaction: `make` wrapped to keep what it made, and a function to call once
        the transaction committed, which wakes the hooks as `commit` does."""
        made: list[NewSaga | SagaCommit] = []

        def keeping(attempt: LockAttempt) -> Made:
            result = make(attempt)
            made[:] = [result] if isinstance(result, NewSaga | SagaCommit) else []
            return result

        return keeping, lambda: self._written(self._sinks_of(made))

    def _sinks_of(self, writes: Iterable[NewSaga | SagaCommit]) -> set[str]:
        """The sinks that select some transition of `writes` (as `outbox_events` does)."""
        return {
            sink.name
            for write in writes
            for transition in write.transitions
            for sink in self.event_sinks
            if sink.selects(write.saga.saga_type, transition.event)
        }

    def _group_commit(self) -> GroupCommit:
        if self._group is None:
            self._group = GroupCommit(self.write)
        return self._group

    async def follow_commits(
        self, committed: Callable[[str], None], live: Callable[[bool], None]
    ) -> None:
        """Until cancelled, call `committed(saga_id)` for each saga that any process commits,
        and `live(True)` while that holds (`live(False)` when commits may go unheard).

        The default serves a store only one process writes (SQLite): its own driver
        reports each commit, so there is nothing to follow and the feed is live at once.
        """
        live(True)

    def pool_stats(self) -> dict[str, int]:
        """Statistics of the store's connection pool (psycopg_pool's `get_stats()` keys,
        and `server_lost`: 1 while the database is found gone), empty for a store without
        one; cheap enough to read at every metrics scrape."""
        return {}

    @abc.abstractmethod
    async def get_saga(self, saga_id: str) -> SagaRecord | None:
        """The saga row, or None."""

    @abc.abstractmethod
    async def get_steps(self, saga_id: str) -> list[StepRecord]:
        """The saga's step rows ordered by index."""

    @abc.abstractmethod
    async def load_sagas(self, saga_ids: Sequence[str]) -> list[StoredSaga]:
        """Each saga's row, steps and newest log seq, read set-based: a few statements
        whatever the number of sagas (one round trip on PostgreSQL), so resuming a
        claimed batch costs no round trip per saga. Unknown ids are left out; the
        order is that of `saga_ids`."""

    @abc.abstractmethod
    async def get_transitions(self, saga_id: str, after_seq: int = 0) -> list[TransitionRecord]:
        """The saga's log rows with seq > after_seq, in order."""

    @abc.abstractmethod
    async def last_seq(self, saga_id: str) -> int:
        """The seq of the saga's newest log row, 0 when it has none (resuming needs no more)."""

    @abc.abstractmethod
    async def list_sagas(
        self, where: SagaFilter, limit: int, after: PagePosition | None = None
    ) -> list[SagaRecord]:
        """Up to `limit` sagas matching `where`, newest first (create_time, then saga_id,
        descending), strictly after `after`. Keyset paging: sagas inserted while a
        client pages are newer than its first page, so pages neither repeat nor skip.
        """

    @abc.abstractmethod
    async def match_sagas(
        self, where: SagaFilter, limit: int, after_id: str | None = None
    ) -> list[str]:
        """The ids of up to `limit` sagas matching `where`, in saga id order, after
        `after_id`: the pages of a bulk operator action, keyed by the primary key, so
        the action changing the sagas' status and times never moves the page under it."""

    @abc.abstractmethod
    async def count_sagas(self, where: SagaFilter) -> int:
        """How many sagas match `where` now (a bulk action's dry run)."""

    @abc.abstractmethod
    async def delete_finished(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` finished sagas (COMPLETED or FAILED) last updated before
        `before`, oldest first, with their steps and transitions, in one short
        transaction; returns how many. A saga that needs intervention is never deleted.
        """

    @abc.abstractmethod
    async def claim_sagas(self, lease: Lease, limit: int) -> list[SagaRecord]:
        """Claim up to `limit` unfinished sagas whose lease is missing or expired.

        Claimed sagas get `lease.owner`, a fresh expiry and a bumped version, which
        fences off the previous owner (which may be this owner itself, if it let a
        lease expire: its drive then reloads). Concurrent claimers never get the same
        saga (PostgreSQL: FOR UPDATE SKIP LOCKED). The database's clock decides expiry.
        """

    @abc.abstractmethod
    async def claim_saga(self, lease: Lease, saga_id: str) -> SagaRecord | None:
        """Claim one unfinished saga if its lease is free, expired or already the owner's;
        None if another owner holds it or it is finished."""

    @abc.abstractmethod
    async def renew_leases(self, lease: Lease, saga_ids: Sequence[str]) -> set[str]:
        """Extend the owner's leases on these sagas; returns the ids it still holds."""

    @abc.abstractmethod
    async def release_leases(self, owner: str, saga_ids: Sequence[str]) -> None:
        """Give up the owner's leases so another replica may claim the sagas at once."""

    async def end_lost_sessions(self, owner: str, grace_seconds: float) -> dict[str, int]:
        """End the database sessions of every other replica found lost: one that holds
        leases of unfinished sagas and whose every lease expired more than `grace_seconds`
        ago (by the database's clock). Its row locks go with its sessions, so the sagas it
        held (in a write it was frozen in the middle of) can be claimed. A replica holding
        no lease, or any lease still live, is never touched, nor is `owner` itself.
        Returns, per lost replica, how many of its sessions were ended (those with none
        left are absent).

        The default serves a store only one process uses (SQLite): nobody to end.
        """
        return {}

    @abc.abstractmethod
    async def take_locks(
        self,
        saga_id: str,
        keys: Sequence[str],
        version: int,
        decide: Callable[[LockAttempt], SagaCommit | None],
    ) -> LockAttempt:
        """In one transaction: find who holds or queues ahead for any of `keys`, write the
        commit `decide` makes of that (its version check fences a replica that lost the
        saga), then take every key (nobody in the way) or queue the saga for all of them
        with one ticket (its first refusal). Nothing is taken one key at a time. When
        `decide` writes nothing, the saga must still be at `version`, else
        StaleSagaVersion: a waiter changed meanwhile (an operator, another replica)."""

    @abc.abstractmethod
    async def create_locked_saga(
        self,
        idempotency_key: str | None,
        keys: Sequence[str],
        open_saga: Callable[[LockAttempt], NewSaga],
    ) -> CreateSagaResult:
        """Insert a new saga that takes `keys` before its first step, in one transaction
        with the keys (nobody in the way) or its places in their queues: what `open_saga`
        makes of who is in the way is inserted, unless it raises (then nothing is
        stored). A known idempotency key answers its saga with `created=False`."""

    @abc.abstractmethod
    async def lock_blockers(self, saga_id: str, keys: Sequence[str]) -> list[LockBlocker]:
        """Who holds, or queues for, any of `keys` (other than `saga_id`), now."""

    @abc.abstractmethod
    async def lock_holdings(self, saga_id: str) -> list[LockHolding]:
        """The keys the saga holds and those it queues for, with its place in each queue."""

    def lock_releases(self) -> AsyncIterator[str] | None:
        """Keys released by any process sharing the store, as they are released (one
        listening connection); None where nothing else can release (SQLite: one writer
        process, whose executor wakes its own waiters)."""
        return None

    @abc.abstractmethod
    async def unfinished_definitions(self) -> dict[tuple[str, int], int]:
        """How many RUNNING or COMPENSATING sagas each (saga type, version) has."""

    @abc.abstractmethod
    async def waiting_steps(self, limit: int) -> list[tuple[str, int]]:
        """(saga id, step index) of up to `limit` WAITING asynchronous steps, the longest
        waiting first: the tasks people may complete."""

    @abc.abstractmethod
    async def count_needing_intervention(self) -> dict[str, int]:
        """How many sagas need an operator, by saga type (types with none are absent);
        read from the database, so every replica reports the same."""

    # --- the outbox (orchestrator.core.events; docs/events.md) -------------------------

    @abc.abstractmethod
    async def pending_events(self, sink: str, partition: int, limit: int) -> list[PendingEvent]:
        """The oldest `limit` undelivered events of `sink`'s `partition`, in outbox (id)
        order: within a partition, each saga's events in its log's order.

        Across sagas, ids are drawn before commit, so a row with a lower id than one
        already read may still appear (its transaction committed later): read what is
        pending and delete what was delivered, never resume "after the last id read".

        Not fenced: the relay publishes a partition only while it holds its lease
        (`claim_event_partitions`) and deletes through `settle_partitions`."""

    @abc.abstractmethod
    async def pending_events_of(
        self, sink: str, partitions: Sequence[int], limit: int
    ) -> list[PendingEvent]:
        """`pending_events` of several partitions in one read: up to `limit` rows of each,
        all in outbox (id) order, so each partition's rows keep their order."""

    @abc.abstractmethod
    async def delete_events(self, ids: Sequence[int]) -> int:
        """Delete the outbox rows `ids` (delivered); return how many were still there.

        Not fenced: for tools and tests; the relay deletes through `settle_partitions`."""

    @abc.abstractmethod
    async def event_backlog(self) -> dict[str, SinkBacklog]:
        """Per sink with undelivered events: how many, and when the oldest was written."""

    @abc.abstractmethod
    async def claim_event_partitions(
        self, sink: str, partitions: int, lease: Lease, limit: int
    ) -> list[PartitionClaim]:
        """Claim up to `limit` of `sink`'s partitions 0 .. `partitions`-1 whose lease is
        missing or expired (by the database's clock), for `lease.owner`. Each claim
        bumps the partition's version, fencing out its previous owner's deletes;
        concurrent claimers never get the same partition."""

    @abc.abstractmethod
    async def event_relays(self, lease: Lease) -> int:
        """Announce `lease.owner` as a running relay (for the lease's length, by the
        database's clock) and return how many relays are live, itself included: a
        replica's fair share of a sink's partitions is the partitions over this."""

    @abc.abstractmethod
    async def renew_event_partitions(self, sink: str, lease: Lease) -> list[PartitionClaim]:
        """Extend `lease.owner`'s leases on `sink`'s partitions; returns those it still
        holds, at their versions (a partition claimed by another since is absent)."""

    @abc.abstractmethod
    async def release_event_partitions(
        self, sink: str, owner: str, partitions: Sequence[int] | None = None
    ) -> None:
        """Give up `owner`'s partitions of `sink` (all, or those listed), so another
        replica takes them at once."""

    @abc.abstractmethod
    async def settle_events(
        self,
        claim: PartitionClaim,
        lease: Lease,
        delivered: Sequence[int],
        dead: DeadEvent | None = None,
    ) -> bool:
        """Delete the `delivered` outbox rows of the claimed partition and move `dead`
        (if any) to the dead-letter table, in one transaction that first checks the
        partition is still `lease.owner`'s at `claim.version` (and renews its lease).
        Returns False, having changed nothing, when the claim is lost."""

    @abc.abstractmethod
    async def settle_partitions(
        self, lease: Lease, settlements: Sequence[Settlement]
    ) -> list[PartitionClaim]:
        """`settle_events` of several partitions in one transaction, each fenced on its
        own: a lost claim changes nothing of its partition and is returned, the others
        are settled."""

    @abc.abstractmethod
    async def dead_event_counts(self) -> dict[str, int]:
        """How many dead-lettered events each sink has (sinks with none are absent)."""

    # --- operating the sinks (orchestrator/store/event_admin.py) ---------------------

    @abc.abstractmethod
    async def event_partition_leases(self) -> list[PartitionLease]:
        """Every sink's partitions the database knows, with their owners, in order."""

    @abc.abstractmethod
    async def live_event_relays(self) -> list[str]:
        """The replicas whose relay announcement has not expired, by id."""

    @abc.abstractmethod
    async def dead_events(self, sink: str | None, after: int, limit: int) -> list[DeadLetter]:
        """Up to `limit` dead letters (of `sink`, or every sink) with ids above `after`."""

    @abc.abstractmethod
    async def requeue_dead_events(self, sink: str, ids: Sequence[int] | None) -> int:
        """Move `sink`'s dead letters `ids` (None: all) back into the outbox with their
        event ids, in one transaction; returns how many moved."""

    @abc.abstractmethod
    async def enqueue_events(self, events: Sequence[OutboxEvent]) -> int:
        """Write `events` to the outbox in one transaction (a replay); returns how many."""

    @abc.abstractmethod
    async def transitions_since(
        self,
        since: datetime,
        after: tuple[datetime, str, int] | None,
        namespaces: Sequence[str] | None,
        limit: int,
    ) -> list[TransitionRecord]:
        """Up to `limit` log rows at or after `since`, in (time, saga id, seq) order,
        strictly after `after`, of sagas in `namespaces` (None: every namespace)."""
