"""saga-orchestrator: durable sagas over typed gRPC commands.

The public surface for people who write saga definitions:

    from orchestrator import Call, Parallel, SagaDefinition, Step, StepContext
"""

from orchestrator.core.definition import (
    AsyncCompletion,
    Call,
    LockPolicy,
    Locks,
    OnTimeout,
    Parallel,
    RetryPolicy,
    SagaDefinition,
    Step,
    StepContext,
)

__all__ = [
    "AsyncCompletion",
    "Call",
    "LockPolicy",
    "Locks",
    "OnTimeout",
    "Parallel",
    "RetryPolicy",
    "SagaDefinition",
    "Step",
    "StepContext",
]
