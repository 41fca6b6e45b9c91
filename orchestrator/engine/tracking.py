"""Tracked sagas' incoming events: `TrackedEvents`, the process's one `EventIngestor`.

Every way in (a RabbitMQ queue, a NATS consumer, IngestEvents, the HTTP binding) hands
its batches to `ingest`, and acknowledges them once it returns. A batch costs one read
and one write whatever its size:

1. the event types no tracked type declares are IGNORED, repeats within the batch are
   DUPLICATE; each other event is routed to the tracked types declaring its type and
   correlated (`tracking.correlation_of`);
2. one read (`Store.look_up_events`, one round trip on PostgreSQL) finds the keys
   already ingested (DUPLICATE), the instances by their keys with their steps, and the
   events held for them;
3. per instance, the pure core (`orchestrator.core.observing`) starts it or applies
   the events in order, feeding back the held events whose turn has come; an event
   with no correlation value is an anomaly row;
4. everything is committed through group commit, each instance's rows in its saga's
   write (`SagaCommit.ingested`): concurrent batches and the drivers' commits share
   transactions. Events of no instance yet (held until their start) are one more
   write of their own, serialised with the instance's start (`InstanceGuard`).

An instance another replica moved meanwhile (StaleSagaVersion), or started first
(its insert skipped), is settled again from a fresh load, up to INGEST_ATTEMPTS
times, as `completions.py` does for completions. Once committed, the watchers of each
saga written are woken (WatchSaga sees event-driven transitions at once) and a saga
that has a rescue compensation to send is handed to the executor.

Deadlines need nothing here: a waiting tracked saga is parked with its wake time, and
a replica claims it then, to time the step out. Held events whose wait ran out are
moved to the anomalies by `keep_expiring` (one replica at a time per row).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from orchestrator.core.clock import utc_now
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.errors import StaleSagaVersion
from orchestrator.core.ids import new_saga_id
from orchestrator.core.incoming import IncomingEvent, IngestVerdict
from orchestrator.core.ingested import (
    EventKey,
    HeldEvent,
    IngestedEvent,
    IngestedRows,
)
from orchestrator.core.machine import SagaRun
from orchestrator.core.namespaces import DEFAULT_NAMESPACE, qualified
from orchestrator.core.observing import (
    EventOutcome,
    apply_event,
    feed_held,
    start_instance,
    take_opening,
)
from orchestrator.core.records import CreateSagaResult, NewSaga, SagaCommit, StoredSaga
from orchestrator.core.registry import Registry
from orchestrator.core.tracking import EventRole, TrackedTypes, correlation_of, instance_key
from orchestrator.engine.event_payloads import event_from_payload
from orchestrator.engine.executor import Executor
from orchestrator.engine.held_events import expire_held, keep_expiring
from orchestrator.engine.ingest_plans import Instance, Loose, Plan, Routed, held_row
from orchestrator.store.base import Store

logger = logging.getLogger(__name__)

DEFAULT_WAIT_FOR_START_SECONDS = 60.0
"""How long an event waits for its instance's start event (`--tracked-wait-for-start`)."""
INGEST_ATTEMPTS = 5
"""Fresh loads of an instance that other writers keep moving, before the batch fails."""


class TrackedEvents:
    """The `EventIngestor` of tracked saga types, and the sweep of expired held events.

    `wait_for_start`: seconds an event waits for its instance to start (also, past the
    type's windows, for an early event's turn) before it becomes an anomaly.
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        executor: Executor,
        *,
        wait_for_start: float = DEFAULT_WAIT_FOR_START_SECONDS,
        clock: Callable[[], datetime] = utc_now,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        self._store = store
        self._registry = registry
        self._executor = executor
        self._types = TrackedTypes(registry)
        self._wait_for_start = timedelta(seconds=wait_for_start)
        self._clock = clock
        self._namespace = namespace
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def for_registry(
        cls, store: Store, registry: Registry, executor: Executor, *, wait_for_start: float
    ) -> TrackedEvents | None:
        """The ingestor of `registry`'s tracked types; None when it has none."""
        if not TrackedTypes(registry):
            return None
        return cls(store, registry, executor, wait_for_start=wait_for_start)

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type a tracked type declares (what the ways in subscribe to)."""
        return self._types.event_types

    # --- ingesting ---------------------------------------------------------------------

    async def ingest(self, events: Sequence[IncomingEvent]) -> list[IngestVerdict]:
        """Apply a batch and return each event's verdict once all of it is committed (see
        the module). Raises when the store cannot be reached, or when an instance kept
        changing under INGEST_ATTEMPTS fresh loads: nothing is to be acknowledged then
        (what was committed is found DUPLICATE on redelivery)."""
        verdicts: list[IngestVerdict | None] = [None] * len(events)
        first_of_key: dict[EventKey, int] = {}
        todo: list[int] = []
        for position, event in enumerate(events):
            if not self._types.roles(event.type):
                verdicts[position] = IngestVerdict.IGNORED
            elif event.key in first_of_key:
                verdicts[position] = IngestVerdict.DUPLICATE
            else:
                first_of_key[event.key] = position
                todo.append(position)
        for _ in range(INGEST_ATTEMPTS):
            if not todo:
                break
            todo = await self._settle(events, todo, verdicts)
        if todo:
            raise StaleSagaVersion(
                f"{len(todo)} event(s) of this batch kept meeting other writers' changes; "
                "nothing of them was applied, deliver them again"
            )
        return [verdict or IngestVerdict.IGNORED for verdict in verdicts]

    async def _settle(
        self,
        events: Sequence[IncomingEvent],
        positions: Sequence[int],
        verdicts: list[IngestVerdict | None],
    ) -> list[int]:
        """One pass over the events not yet settled; returns those to try again."""
        now = self._clock()
        instances: dict[tuple[str, str], Instance] = {}
        uncorrelated: list[int] = []
        for position in positions:
            if not self._route(position, events[position], instances):
                uncorrelated.append(position)
        held_of: dict[str, list[str]] = {}
        for instance in instances.values():
            held_of.setdefault(instance.definition.name, []).append(instance.correlation)
        found = await self._store.look_up_events(
            [events[p].key for p in positions],
            [instance.key for instance in instances.values()],
            held_of,
            self._namespace,
        )
        for position in positions:
            if events[position].key in found.verdicts:
                verdicts[position] = IngestVerdict.DUPLICATE
        held: dict[tuple[str, str], list[HeldEvent]] = {}
        for event in found.held:
            held.setdefault((event.saga_type, event.correlation), []).append(event)
        loose = Loose()
        for position in uncorrelated:
            if verdicts[position] is None:
                self._uncorrelated(position, events[position], now, loose)
        plans: list[Plan] = []
        written: set[EventKey] = set()  # an event routed to two types: one ingested row
        for instance in instances.values():
            instance.events = [r for r in instance.events if r.event.key not in found.verdicts]
            if not instance.events:
                continue
            stored = found.sagas.get(instance.key)
            plan = self._plan(instance, stored, held, now, loose, written)
            if plan is not None:
                plans.append(plan)
        return await self._write(plans, loose, verdicts)

    def _route(
        self, position: int, event: IncomingEvent, instances: dict[tuple[str, str], Instance]
    ) -> bool:
        """File the event under each instance it concerns; False when it names none."""
        routed = False
        for role in self._types.roles(event.type):
            correlation = correlation_of(role.definition, event)
            if correlation is None:
                continue
            routed = True
            name = role.definition.name
            instance = instances.get((name, correlation))
            if instance is None:
                key = qualified(self._namespace, instance_key(name, correlation))
                instance = Instance(role.definition, correlation, self._namespace, key)
                instances[(name, correlation)] = instance
            instance.events.append(Routed(position, event, role.role))
        return routed

    def _uncorrelated(
        self, position: int, event: IncomingEvent, now: datetime, loose: Loose
    ) -> None:
        """An event with no correlation value for any type declaring it: an anomaly row."""
        definition = self._types.roles(event.type)[0].definition
        assert definition.tracking is not None
        reason = f"no correlation value ({definition.tracking.correlation.describe()})"
        loose.anomaly(position, event, definition.name, "", reason, now)

    def _plan(
        self,
        instance: Instance,
        stored: StoredSaga | None,
        held: dict[tuple[str, str], list[HeldEvent]],
        now: datetime,
        loose: Loose,
        written: set[EventKey],
    ) -> Plan | None:
        """Settle one instance with the pure core: start or load it, apply its events in
        order, feed back the held ones whose turn came. None when it has no saga yet."""
        name = instance.definition.name
        if stored is not None and stored.saga.saga_type != name:
            for routed in instance.events:
                reason = (
                    f"correlation value {instance.correlation!r} is taken by a "
                    f"{stored.saga.saga_type} saga"
                )
                loose.anomaly(
                    routed.position, routed.event, name, instance.correlation, reason, now
                )
            return None
        plan = Plan(instance)
        ingested: list[IngestedEvent] = []
        holding: dict[EventKey, tuple[int, HeldEvent]] = {}
        events = list(instance.events)
        if stored is None:
            start = next((r for r in events if r.role is EventRole.START), None)
            if start is None:
                loose.hold_until_start(instance, now, now + self._wait_for_start)
                return None
            events.remove(start)
            run = start_instance(
                instance.definition, start.event, now, new_saga_id(), self._namespace
            )
            self._ingested(ingested, start.event, IngestVerdict.RECORDED, run, now, written)
            plan.verdicts[start.position] = IngestVerdict.RECORDED
        else:
            definition = self._registry.get(stored.saga.saga_type, stored.saga.definition_version)
            run = SagaRun(definition, stored.saga, list(stored.steps), stored.last_seq)
        saga_id = run.saga.saga_id
        from_store = {h.key: h for h in held.get((name, instance.correlation), ())}
        known_held = tuple(from_store)
        applied: list[tuple[EventKey, str]] = []

        def feed() -> None:
            if not from_store and not holding:
                return  # nothing held: nothing to ask the core about
            waiting = [event_from_payload(h.payload) for h in from_store.values()]
            waiting += [events_by_key[key] for key in holding]
            for event, outcome in feed_held(run, waiting, now):
                plan.needs_driving |= outcome.needs_driving
                if event.key in from_store:
                    del from_store[event.key]
                    applied.append((event.key, saga_id))
                else:
                    position, _ = holding.pop(event.key)
                    plan.verdicts[position] = outcome.verdict
                    for index, row in enumerate(ingested):
                        if row.key == event.key:
                            ingested[index] = IngestedEvent(
                                row.source, row.event_id, outcome.verdict.value, now, saga_id
                            )

        events_by_key = {r.event.key: r.event for r in events}
        feed()
        for routed in events:
            outcome: EventOutcome = apply_event(run, routed.event, now)
            plan.needs_driving |= outcome.needs_driving
            plan.verdicts[routed.position] = outcome.verdict
            if outcome.verdict is IngestVerdict.DUPLICATE:
                continue
            self._ingested(ingested, routed.event, outcome.verdict, run, now, written)
            if outcome.verdict is IngestVerdict.HELD:
                expire = now + self._wait_for_start + _windows(run.definition)
                row = held_row(routed.event, instance, now, expire)
                holding[routed.event.key] = (routed.position, row)
            feed()
        rows = IngestedRows(
            ingested=tuple(ingested),
            held=tuple(row for _, row in holding.values()),
            applied=tuple(applied),
            guards=() if stored is not None else (instance.guard(known_held),),
        )
        if stored is None:
            opening = take_opening(run)
            plan.new_saga = NewSaga(
                opening.saga, opening.steps, opening.transitions, opening.lease, ingested=rows
            )
        elif run.has_pending():
            commit = run.take_commit()
            saga = commit.saga
            if saga.version == commit.expected_version:
                # Only anomaly rows were logged: the saga row is still written (its
                # version fences the log rows), one version on.
                saga = dataclasses.replace(saga, version=saga.version + 1, update_time=now)
            plan.commit = SagaCommit(
                saga,
                commit.expected_version,
                commit.steps,
                commit.transitions,
                commit.released_locks,
                ingested=rows,
            )
        elif rows:
            loose.ingested.extend(rows.ingested)
            loose.verdicts.update(plan.verdicts)
            return None
        return plan

    @staticmethod
    def _ingested(
        rows: list[IngestedEvent],
        event: IncomingEvent,
        verdict: IngestVerdict,
        run: SagaRun,
        now: datetime,
        written: set[EventKey],
    ) -> None:
        """Add the event's ingested row, unless another instance of this pass has it (an
        event type two tracked types declare: the key is written once)."""
        if event.key in written:
            return
        written.add(event.key)
        rows.append(IngestedEvent(event.source, event.id, verdict.value, now, run.saga.saga_id))

    async def _write(
        self, plans: Sequence[Plan], loose: Loose, verdicts: list[IngestVerdict | None]
    ) -> list[int]:
        """Commit the plans (group commit) and the loose rows; give the verdicts of what
        committed; return the positions to settle again."""
        writes: list[Any] = []
        for plan in plans:
            if plan.new_saga is not None:
                writes.append(self._store.open_saga(plan.new_saga))
            elif plan.commit is not None:
                writes.append(self._store.commit([plan.commit]))
        rows = loose.rows()
        if rows:
            writes.append(self._store.record_ingested(rows))
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        again: list[int] = []
        failure: BaseException | None = None
        results = iter(outcomes)
        for plan in plans:
            if plan.new_saga is None and plan.commit is None:
                continue
            outcome = next(results)
            if isinstance(outcome, StaleSagaVersion) or (
                isinstance(outcome, CreateSagaResult) and not outcome.created
            ):
                again += [routed.position for routed in plan.instance.events]
                continue
            if isinstance(outcome, BaseException):
                failure = failure or outcome
                continue
            self._committed(plan)
            for position, verdict in plan.verdicts.items():
                verdicts[position] = verdict
        if rows:
            outcome = next(results)
            if isinstance(outcome, StaleSagaVersion):
                again += list(loose.verdicts)
            elif isinstance(outcome, BaseException):
                failure = failure or outcome
            else:
                for position, verdict in loose.verdicts.items():
                    verdicts[position] = verdict
        if failure is not None:
            raise failure
        return sorted(set(again))

    def _committed(self, plan: Plan) -> None:
        """Wake the saga's watchers; hand a saga with a compensation to send to a driver."""
        write = plan.new_saga if plan.new_saga is not None else plan.commit
        assert write is not None
        saga = write.saga
        self._executor.watchers.notify(saga.saga_id)
        if plan.needs_driving and not saga.status.is_terminal:
            self._executor.wake(saga.saga_id)
        elif not saga.status.is_terminal:
            self._executor.parked_until(saga.wake_time)

    # --- the sweep of expired held events (engine/held_events.py) --------------------

    def start(self) -> None:
        """Start the sweep of expired held events (once)."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(
                keep_expiring(self._store, self._clock), name="held-events-sweep"
            )

    async def expire_held(self) -> int:
        """One sweep now (see `held_events.expire_held`); returns how many moved."""
        return await expire_held(self._store, self._clock())

    async def stop(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)


def _windows(definition: SagaDefinition) -> timedelta:
    """The sum of a tracked type's step windows: as long as an early event may have to
    wait for its turn in a flow that keeps to its windows."""
    return timedelta(
        seconds=sum(step.observed.within for step in definition.all_steps if step.observed)
    )
