"""Bulk operator actions end to end (RetrySagas, ResolveSagas, AbortSagas and `saga retry
--all`): sagas stuck on one participant are counted by a dry run that changes nothing,
retried page by page, each with its own log row naming the operator and the reason,
and nothing outside the filter (another namespace, another state) is touched. Real
processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections import Counter

import grpc
import pytest

from orchestrator.core.records import TransitionEvent
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.effects import effects_of
from tests.e2e.test_cli import saga_cli
from tests.e2e.test_failure_policy import Rig, rig
from tests.support.payloads import struct, travel

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STUCK_HOTEL = {"hotel": ["--compensation-failures", "-1"], "flight": ["--fail-ids", "NO-FLY"]}
"""The flight refuses NO-FLY, and the hotel never cancels: such a saga waits for an
operator at book_hotel's compensation."""
STUCK_ON_HOTEL = pb.BulkSagaFilter(participant="hotel", needs_intervention=True)
OPERATOR = {"reason": "hotel is back", "requested_by": "bob"}


async def start_in(r: Rig, namespace: str, flight: str) -> str:
    reply = await r.stub.StartSaga(
        pb.StartSagaRequest(
            saga_type="retry_probe",
            correlation_id="bulk-test",
            payload=struct(travel(flight=flight)),
            namespace=namespace,
        ),
        timeout=5,
    )
    return reply.saga_id


async def log_events(r: Rig, saga_id: str) -> list[tuple[TransitionEvent, str, str]]:
    return [(t.event, t.actor, t.reason) for t in await r.log(saga_id)]


async def test_bulk_retry_counts_then_retries_exactly_the_stuck_sagas_page_by_page(
    tmp_path, database_url
):
    async with rig(tmp_path, database_url, **STUCK_HOTEL) as r:
        stuck = [await start_in(r, "default", "NO-FLY") for _ in range(5)]
        elsewhere = await start_in(r, "other", "NO-FLY")
        completed = await start_in(r, "default", "LH400")
        for saga_id in [*stuck, elsewhere, completed]:
            await wait_terminal(r.stub, saga_id)
        here = pb.BulkSagaFilter(namespace="default")
        here.MergeFrom(STUCK_ON_HOTEL)
        logs_before = {saga_id: await log_events(r, saga_id) for saga_id in [*stuck, elsewhere]}

        dry = await r.stub.RetrySagas(
            pb.RetrySagasRequest(filter=here, dry_run=True, **OPERATOR), timeout=10
        )
        logs_after_dry_run = {s: await log_events(r, s) for s in [*stuck, elsewhere]}
        sample = (
            await r.stub.GetSaga(pb.GetSagaRequest(saga_id=stuck[0]), timeout=5)
        ).failure_reason
        by_reason = await r.stub.RetrySagas(
            pb.RetrySagasRequest(
                filter=pb.BulkSagaFilter(
                    failure_reason_contains="gave up after", namespace="default"
                ),
                dry_run=True,
                **OPERATOR,
            ),
            timeout=10,
        )
        by_step = await r.stub.AbortSagas(
            pb.AbortSagasRequest(
                filter=pb.BulkSagaFilter(failed_step="book_hotel"), dry_run=True, **OPERATOR
            ),
            timeout=10,
        )
        nothing = await r.stub.RetrySagas(
            pb.RetrySagasRequest(
                filter=pb.BulkSagaFilter(participant="payment", needs_intervention=True),
                **OPERATOR,
            ),
            timeout=10,
        )

        r.restart_participant("hotel")
        pages: list[pb.RetrySagasResponse] = []
        token = ""
        while True:
            page = await r.stub.RetrySagas(
                pb.RetrySagasRequest(filter=here, page_size=2, page_token=token, **OPERATOR),
                timeout=30,
            )
            pages.append(page)
            token = page.next_page_token
            if not token:
                break
        done = [await wait_terminal(r.stub, saga_id) for saga_id in stuck]
        logs = {saga_id: await log_events(r, saga_id) for saga_id in [*stuck, elsewhere]}
        left = await r.stub.GetSaga(pb.GetSagaRequest(saga_id=elsewhere), timeout=5)
        effects = {saga_id: await effects_of(r.addresses, saga_id) for saga_id in stuck}

    assert dry.matched_count == 5 and set(dry.saga_ids) == set(stuck)
    assert not dry.results and not dry.next_page_token
    assert logs_after_dry_run == logs_before  # the dry run changed nothing
    assert "gave up after" in sample
    assert set(by_reason.saga_ids) == set(stuck) and by_reason.matched_count == 5
    assert set(by_step.saga_ids) == {*stuck, elsewhere}  # every namespace in laptop mode
    assert (nothing.matched_count, list(nothing.saga_ids), list(nothing.results)) == (0, [], [])
    assert not nothing.next_page_token

    assert [len(page.results) for page in pages] == [2, 2, 1]
    retried = [result.saga_id for page in pages for result in page.results]
    assert sorted(retried) == sorted(stuck)  # each once, paging resumed where it stopped
    assert all(
        result.WhichOneof("outcome") == "status" and result.status == pb.SAGA_STATUS_COMPENSATING
        for page in pages
        for result in page.results
    )
    for saga_id, saga in zip(stuck, done, strict=True):
        assert saga.status == pb.SAGA_STATUS_FAILED and not saga.needs_intervention
        retries = [e for e in logs[saga_id] if e[0] is TransitionEvent.SAGA_RETRIED]
        assert retries == [(TransitionEvent.SAGA_RETRIED, "operator:bob", "hotel is back")]
        assert effects[saga_id]["hotel"] == Counter({"CANCELLED": 1})
    assert logs[elsewhere] == logs_before[elsewhere]
    assert left.needs_intervention and left.namespace == "other"


async def test_a_bulk_resolve_at_another_step_is_refused_saga_by_saga(tmp_path, database_url):
    async with rig(tmp_path, database_url, **STUCK_HOTEL) as r:
        stuck = [await start_in(r, "default", "NO-FLY") for _ in range(2)]
        for saga_id in stuck:
            await wait_terminal(r.stub, saga_id)
        r.restart_participant("hotel")
        await r.stub.RetrySaga(pb.RetrySagaRequest(saga_id=stuck[0], **OPERATOR), timeout=5)
        await wait_terminal(r.stub, stuck[0])
        # The first saga, retried singly, is no longer stuck and no longer matches; the
        # second, resolved at the wrong step, is refused as ResolveStep would refuse it.
        wrong = await r.stub.ResolveSagas(
            pb.ResolveSagasRequest(filter=STUCK_ON_HOTEL, step="book_flight", **OPERATOR),
            timeout=10,
        )
        right = await r.stub.ResolveSagas(
            pb.ResolveSagasRequest(filter=STUCK_ON_HOTEL, step="book_hotel", **OPERATOR),
            timeout=10,
        )
        resolved = await wait_terminal(r.stub, stuck[1])
        log = await log_events(r, stuck[1])

    assert [result.saga_id for result in wrong.results] == [stuck[1]]
    assert wrong.results[0].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "stuck at step book_hotel" in wrong.results[0].error.message
    assert [result.saga_id for result in right.results] == [stuck[1]]
    assert right.results[0].WhichOneof("outcome") == "status"
    assert resolved.status == pb.SAGA_STATUS_FAILED and not resolved.needs_intervention
    assert [e for e in log if e[0] is TransitionEvent.STEP_RESOLVED] == [
        (TransitionEvent.STEP_RESOLVED, "operator:bob", "hotel is back")
    ]


async def test_the_cli_dry_runs_then_retries_every_matching_saga_and_sums_up(
    tmp_path, database_url
):
    async with rig(tmp_path, database_url, **STUCK_HOTEL) as r:
        stuck = [await start_in(r, "default", "NO-FLY") for _ in range(3)]
        for saga_id in stuck:
            await wait_terminal(r.stub, saga_id)
        address = ["--address", r.orchestrator.address]
        filters = ["--participant", "hotel", "--needs-intervention", "--reason", "hotel back"]
        dry = saga_cli("retry", "--all", *filters, "--by", "carol", "--dry-run", *address)
        dry_json = saga_cli(
            "retry", "--all", *filters, "--by", "carol", "--dry-run", "--json", *address
        )
        no_filter = saga_cli("retry", "--all", "--reason", "r", "--by", "carol", *address)
        r.restart_participant("hotel")
        real = saga_cli(
            "retry", "--all", *filters, "--by", "carol", "--page-size", "2", "--json", *address
        )
        done = [await wait_terminal(r.stub, saga_id) for saga_id in stuck]

    assert dry.returncode == 0, dry.stderr
    assert "3 sagas match" in dry.stderr
    assert set(dry.stdout.split()) == set(stuck)
    assert json.loads(dry_json.stdout)["matched_count"] == 3
    assert no_filter.returncode == 2 and "at least one filter" in no_filter.stderr
    assert real.returncode == 0, real.stderr
    lines = [json.loads(line) for line in real.stdout.splitlines()]
    assert sorted(line["saga_id"] for line in lines) == sorted(stuck)
    assert {line["status"] for line in lines} == {"SAGA_STATUS_COMPENSATING"}
    assert "3 retried" in real.stderr
    assert all(not saga.needs_intervention for saga in done)


BAD_FILTERS = {
    "unknown status": pb.BulkSagaFilter(status=99),
    "unknown participant": pb.BulkSagaFilter(participant="nobody"),
    "a time out of range": pb.BulkSagaFilter(create_time_after={"seconds": 10**13}),
    "an invalid namespace": pb.BulkSagaFilter(namespace="Not_A-Namespace"),
    "a saga type with spaces": pb.BulkSagaFilter(saga_type=" travel_booking"),
}


@pytest.mark.parametrize("case", BAD_FILTERS)
async def test_a_bad_filter_is_invalid_argument_and_changes_nothing(
    stub: pb_grpc.SagaOrchestratorStub, case: str
):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.AbortSagas(
            pb.AbortSagasRequest(filter=BAD_FILTERS[case], **OPERATOR), timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert "filter." in refused.value.details() or "namespace" in refused.value.details()


async def test_bad_paging_and_missing_fields_are_invalid_argument(
    stub: pb_grpc.SagaOrchestratorStub,
):
    for _ in range(2):
        await wait_terminal(stub, (await start_travel(stub)).saga_id)
    completed = pb.BulkSagaFilter(status=pb.SAGA_STATUS_COMPLETED)
    first = await stub.RetrySagas(
        pb.RetrySagasRequest(filter=completed, dry_run=True, page_size=1, **OPERATOR), timeout=10
    )
    assert first.next_page_token and first.matched_count >= 2
    requests = {
        "a forged token": pb.RetrySagasRequest(filter=completed, page_token="garbage", **OPERATOR),
        "another filter's token": pb.RetrySagasRequest(
            filter=pb.BulkSagaFilter(status=pb.SAGA_STATUS_FAILED),
            page_token=first.next_page_token,
            **OPERATOR,
        ),
        "a negative page size": pb.RetrySagasRequest(filter=completed, page_size=-1, **OPERATOR),
        "no reason": pb.RetrySagasRequest(filter=completed, requested_by="bob"),
        "no operator name": pb.RetrySagasRequest(filter=completed, reason="r"),
    }
    for case, request in requests.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RetrySagas(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    for request in (
        # Another action's token: a retry's page is not an abort's.
        pb.AbortSagasRequest(filter=completed, page_token=first.next_page_token, **OPERATOR),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.AbortSagas(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as no_step:
        await stub.ResolveSagas(pb.ResolveSagasRequest(filter=completed, **OPERATOR), timeout=10)
    assert no_step.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The server still serves, and the next page follows with the right token.
    second = await stub.RetrySagas(
        pb.RetrySagasRequest(
            filter=completed,
            dry_run=True,
            page_size=1,
            page_token=first.next_page_token,
            **OPERATOR,
        ),
        timeout=10,
    )
    assert len(second.saga_ids) == 1 and second.saga_ids[0] not in first.saga_ids


async def start_travel(stub: pb_grpc.SagaOrchestratorStub) -> pb.StartSagaResponse:
    return await stub.StartSaga(
        pb.StartSagaRequest(
            saga_type="travel_booking", correlation_id="bulk-paging", payload=struct(travel())
        ),
        timeout=5,
    )
