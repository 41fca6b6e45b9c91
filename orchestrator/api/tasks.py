"""The SagaTasks service: people decide asynchronous steps (human tasks).

An approver or an operator lists the waiting steps and completes or rejects one; the
decision goes through the same machine path as a participant's completion
(`StepCompletions.decide_task`), recorded in the saga's log with who made it:
`approver:<name>` or `operator:<name>` with auth on, the `requested_by` given without.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format

from orchestrator.api.handlers import mapped_errors
from orchestrator.api.request_checks import check_id, check_operator_request
from orchestrator.api.tenancy import read_scope, visible
from orchestrator.core.errors import InvalidArgument
from orchestrator.core.payload import check_message_text
from orchestrator.core.registry import Registry
from orchestrator.core.timestamps import optional_timestamp
from orchestrator.engine.completions import StepCompletions
from orchestrator.security.auth import Role, current_caller
from orchestrator.store.base import Store
from saga.v1 import tasks_pb2 as pb
from saga.v1 import tasks_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SagaTasks"].full_name
DEFAULT_TASKS = 50
MAX_TASKS = 500


class SagaTasksService(pb_grpc.SagaTasksServicer):
    """ListTasks, CompleteTask and RejectTask (protos/saga/v1/tasks.proto)."""

    def __init__(self, store: Store, registry: Registry, completions: StepCompletions) -> None:
        self._store = store
        self._registry = registry
        self._completions = completions

    @mapped_errors
    async def ListTasks(
        self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListTasksResponse:
        check_message_text(request)
        scope = read_scope(request.namespace)
        size = min(request.page_size or DEFAULT_TASKS, MAX_TASKS)
        if size < 0:
            raise InvalidArgument("page_size must not be negative")
        waiting = await self._store.waiting_steps(size if scope is None else MAX_TASKS)
        loaded = {
            stored.saga.saga_id: stored
            for stored in await self._store.load_sagas(sorted({saga for saga, _ in waiting}))
        }
        tasks = []
        for saga_id, index in waiting:
            stored = loaded.get(saga_id)
            if stored is None or (scope is not None and stored.saga.namespace not in scope):
                continue
            saga, step = stored.saga, stored.steps[index]
            definition = self._registry.get(saga.saga_type, saga.definition_version)
            completion = definition.all_steps[index].completion
            tasks.append(
                pb.Task(
                    saga_id=saga_id,
                    saga_type=saga.saga_type,
                    step=step.name,
                    namespace=saga.namespace,
                    correlation_id=saga.correlation_id,
                    waiting_since=optional_timestamp(step.update_time),
                    wait_deadline=optional_timestamp(step.wait_deadline),
                    result_type=(completion.result_type.DESCRIPTOR.full_name if completion else ""),
                )
            )
        return pb.ListTasksResponse(tasks=tasks[:size])

    @mapped_errors
    async def CompleteTask(
        self, request: pb.CompleteTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CompleteTaskResponse:
        actor, reason = await self._decider(request)
        saga = await self._store.get_saga(request.saga_id)
        assert saga is not None  # _decider found it
        definition = self._registry.get(saga.saga_type, saga.definition_version)
        try:
            completion = definition.step_named(request.step).completion
        except KeyError:
            raise InvalidArgument(f"saga {request.saga_id} has no step {request.step!r}") from None
        if completion is None:
            raise InvalidArgument(f"step {request.step} is not asynchronous: it is not a task")
        try:
            result = json_format.Parse(request.result_json or "{}", completion.result_type())
        except json_format.ParseError as error:
            raise InvalidArgument(
                f"result_json is not a {completion.result_type.DESCRIPTOR.full_name}: {error}"
            ) from None
        await self._completions.decide_task(
            request.saga_id,
            request.step,
            actor=actor,
            result=result.SerializeToString(),
            reason=reason,
        )
        return pb.CompleteTaskResponse()

    @mapped_errors
    async def RejectTask(
        self, request: pb.RejectTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RejectTaskResponse:
        actor, reason = await self._decider(request)
        await self._completions.decide_task(
            request.saga_id,
            request.step,
            actor=actor,
            error=f"rejected by {actor}: {reason}",
            reason=reason,
        )
        return pb.RejectTaskResponse()

    async def _decider(
        self, request: pb.CompleteTaskRequest | pb.RejectTaskRequest
    ) -> tuple[str, str]:
        """Check a decision and name who made it (as operators' changes are named)."""
        check_message_text(request)
        caller = current_caller()
        check_operator_request(
            request.saga_id, request.reason, request.requested_by, authenticated=caller is not None
        )
        check_id("step", request.step)
        visible(
            await self._store.get_saga(request.saga_id),
            request.saga_id,
            read_scope(request.namespace),
        )
        if caller is None:
            return f"approver:{request.requested_by}", request.reason
        role = "operator" if Role.OPERATOR in caller.roles else "approver"
        return f"{role}:{caller.name}", request.reason
