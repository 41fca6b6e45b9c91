"""saga-orchestrator: durable sagas over typed gRPC commands.

The public surface for people who write saga definitions:

    from orchestrator import Call, Parallel, SagaDefinition, Step, StepContext

and for tracked (choreographed) saga types, whose services talk through events:

    from orchestrator import Correlation, OnStuck, TrackedStep, tracked_saga
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
from orchestrator.core.tracking import Correlation, OnStuck, TrackedStep, tracked_saga

__all__ = [
    "AsyncCompletion",
    "Call",
    "Correlation",
    "LockPolicy",
    "Locks",
    "OnStuck",
    "OnTimeout",
    "Parallel",
    "RetryPolicy",
    "SagaDefinition",
    "Step",
    "StepContext",
    "TrackedStep",
    "tracked_saga",
]
