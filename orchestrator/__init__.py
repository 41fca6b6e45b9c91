"""saga-orchestrator: durable sagas over typed gRPC commands.

The public surface for people who write saga definitions.
"""

from orchestrator.definition import Call, RetryPolicy, SagaDefinition, Step, StepContext

__all__ = ["Call", "RetryPolicy", "SagaDefinition", "Step", "StepContext"]
