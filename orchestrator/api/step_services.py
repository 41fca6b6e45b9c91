"""The services that end asynchronous steps, wired as one: SagaCallbacks (participants,
with a step's token) and SagaTasks (people, with a role). The server adds them beside
SagaOrchestrator, with their auth rules, health and reflection names."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from orchestrator.api.callbacks import SERVICE_NAME as CALLBACKS_SERVICE_NAME
from orchestrator.api.callbacks import SagaCallbacksService
from orchestrator.api.tasks import SERVICE_NAME as TASKS_SERVICE_NAME
from orchestrator.api.tasks import SagaTasksService
from orchestrator.core.limits import Limits
from orchestrator.core.registry import Registry
from orchestrator.engine.completions import StepCompletions
from orchestrator.engine.executor import Executor
from orchestrator.security.auth import CALLBACK_RULES, TASK_RULES, Role, orchestrator_rules
from orchestrator.store.base import Store
from saga.participants.common.v1 import callbacks_pb2, callbacks_pb2_grpc
from saga.v1 import tasks_pb2, tasks_pb2_grpc

SERVICE_NAMES = (CALLBACKS_SERVICE_NAME, TASKS_SERVICE_NAME)


@dataclass(frozen=True, slots=True)
class StepServices:
    callbacks: SagaCallbacksService
    tasks: SagaTasksService

    def add_to(self, server: grpc.aio.Server) -> tuple[str, ...]:
        """Register both services; their names, for reflection."""
        callbacks_pb2_grpc.add_SagaCallbacksServicer_to_server(self.callbacks, server)
        tasks_pb2_grpc.add_SagaTasksServicer_to_server(self.tasks, server)
        return SERVICE_NAMES


def step_services(
    store: Store, registry: Registry, executor: Executor, limits: Limits
) -> StepServices:
    completions = StepCompletions(store, registry, executor)
    return StepServices(
        SagaCallbacksService(completions, limits), SagaTasksService(store, registry, completions)
    )


def step_service_rules() -> dict[str, frozenset[Role]]:
    """Both services' auth rules by full method path."""
    return {
        **orchestrator_rules(
            callbacks_pb2.DESCRIPTOR.services_by_name["SagaCallbacks"], CALLBACK_RULES
        ),
        **orchestrator_rules(tasks_pb2.DESCRIPTOR.services_by_name["SagaTasks"], TASK_RULES),
    }
