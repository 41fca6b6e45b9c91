"""The orchestrator's auth: which roles may call each SagaOrchestrator RPC.

The auth file, the roles, the policy and the server interceptor are the participant
kit's (`participants.kit.auth`, shared by both sides), re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.descriptor import ServiceDescriptor

from participants.kit.auth import (
    AuthFile,
    AuthInterceptor,
    AuthPolicy,
    Caller,
    Role,
    current_caller,
    load_auth_file,
    parse_auth_file,
    participant_rules,
    token_digest,
)

__all__ = [
    "CALLBACK_RULES",
    "EVENTS_RULES",
    "INGEST_RULES",
    "ORCHESTRATOR_RULES",
    "TASK_RULES",
    "WEBHOOK_RULES",
    "AuthFile",
    "AuthInterceptor",
    "AuthPolicy",
    "Caller",
    "Role",
    "current_caller",
    "events_rules",
    "ingest_rules",
    "load_auth_file",
    "orchestrator_rules",
    "parse_auth_file",
    "participant_rules",
    "token_digest",
    "webhook_rules",
]

READ_ROLES = frozenset({Role.CLIENT, Role.OPERATOR, Role.READER})
OPERATOR_ONLY = frozenset({Role.OPERATOR})

ORCHESTRATOR_RULES: Mapping[str, frozenset[Role]] = {
    "StartSaga": frozenset({Role.CLIENT}),
    "StartSagas": frozenset({Role.CLIENT}),
    "ExecuteSaga": frozenset({Role.CLIENT}),
    "GetSaga": READ_ROLES,
    "ListSagas": READ_ROLES,
    "GetSagaHistory": READ_ROLES,
    "WatchSaga": READ_ROLES,
    "ListSagaTypes": READ_ROLES,
    "AbortSaga": OPERATOR_ONLY,
    "RetrySaga": OPERATOR_ONLY,
    "ResolveStep": OPERATOR_ONLY,
    "BreakLock": OPERATOR_ONLY,
    "RetrySagas": OPERATOR_ONLY,
    "ResolveSagas": OPERATOR_ONLY,
    "AbortSagas": OPERATOR_ONLY,
}
"""Who may call each SagaOrchestrator RPC (by method name); a new RPC needs a line here."""

COMPLETERS = frozenset({Role.PARTICIPANT, Role.OPERATOR})
CALLBACK_RULES: Mapping[str, frozenset[Role]] = {
    "CompleteStep": COMPLETERS,
    "FailStep": COMPLETERS,
    "HeartbeatStep": COMPLETERS,
}
"""Who may call each SagaCallbacks RPC: the participant that accepted the step (it also
holds the step's token), or an operator completing it by hand."""

DECIDERS = frozenset({Role.APPROVER, Role.OPERATOR})
TASK_RULES: Mapping[str, frozenset[Role]] = {
    "ListTasks": DECIDERS,
    "CompleteTask": DECIDERS,
    "RejectTask": DECIDERS,
}
"""Who may call each SagaTasks RPC: approvers (people deciding human tasks) and operators."""


WEBHOOK_RULES: Mapping[str, frozenset[Role]] = {
    "CreateWebhookEndpoint": OPERATOR_ONLY,
    "GetWebhookEndpoint": OPERATOR_ONLY,
    "ListWebhookEndpoints": OPERATOR_ONLY,
    "UpdateWebhookEndpoint": OPERATOR_ONLY,
    "RotateWebhookSecret": OPERATOR_ONLY,
    "DeleteWebhookEndpoint": OPERATOR_ONLY,
    "ListWebhookDeliveries": OPERATOR_ONLY,
    "RetryWebhookDeliveries": OPERATOR_ONLY,
}
"""Who may call each SagaWebhooks RPC: operators only (endpoints see every saga's events)."""


def _rules_by_path(
    service: ServiceDescriptor, rules: Mapping[str, frozenset[Role]]
) -> dict[str, frozenset[Role]]:
    return {
        f"/{service.full_name}/{name}": roles
        for name, roles in rules.items()
        if name in service.methods_by_name
    }


def orchestrator_rules(
    service: ServiceDescriptor, rules: Mapping[str, frozenset[Role]] = ORCHESTRATOR_RULES
) -> dict[str, frozenset[Role]]:
    """A service's rules by full method path (the orchestrator's by default)."""
    return _rules_by_path(service, rules)


def webhook_rules(service: ServiceDescriptor) -> dict[str, frozenset[Role]]:
    """The SagaWebhooks service's rules by full method path."""
    return _rules_by_path(service, WEBHOOK_RULES)


EVENTS_RULES: Mapping[str, frozenset[Role]] = {
    "ListEventSinks": frozenset({Role.OPERATOR, Role.READER}),
    "ListDeadEvents": frozenset({Role.OPERATOR, Role.READER}),
    "ReplayEvents": OPERATOR_ONLY,
    "RequeueDeadEvents": OPERATOR_ONLY,
}
"""Who may call each SagaEvents RPC (operators' view of the event sinks)."""


def events_rules(service: ServiceDescriptor) -> dict[str, frozenset[Role]]:
    """The SagaEvents service's rules by full method path."""
    return {
        f"/{service.full_name}/{name}": roles
        for name, roles in EVENTS_RULES.items()
        if name in service.methods_by_name
    }


INGEST_RULES: Mapping[str, frozenset[Role]] = {
    "IngestEvents": frozenset({Role.PARTICIPANT, Role.OPERATOR}),
    "ListEventAnomalies": frozenset({Role.OPERATOR, Role.READER}),
}
"""Who may call each SagaEventIngest RPC: choreographed services (the participant role)
and operators send events; operators and readers list the anomalies. The console's
HTTP binding at POST /v1/events lets in the same senders."""


def ingest_rules(service: ServiceDescriptor) -> dict[str, frozenset[Role]]:
    """The SagaEventIngest service's rules by full method path."""
    return _rules_by_path(service, INGEST_RULES)
