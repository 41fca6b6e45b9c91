"""How long a failing step can take before the saga gives up on it: the worst case.

Computed from the definition alone, the way the machine spends a retry policy
(`SagaRun.action_failed`, `SagaRun.compensation_failed`): an attempt, then the n-th
retry after `RetryPolicy.backoff(n)`, until `max_attempts` attempts were made. The
worst case assumes every attempt runs out its deadline (`Step.timeout`) and every
backoff is stretched by the full jitter; a participant that refuses connections or
answers at once fails each attempt promptly, so its saga gets there sooner, in about
the sum of the backoffs. Not counted: the time a claim or a wake-up takes, a saga
deadline cutting attempts short, and an asynchronous step's wait for its completion.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.definition import RetryPolicy, SagaDefinition, Step

NEEDS_INTERVENTION = "needs_intervention"
"""What the saga comes to when the step's attempts (or its compensation's) run out."""
ROLLBACK = "rollback"
"""A read-only step given up: it changed nothing, the steps before it are compensated."""

ESCALATION_ASSUMES = (
    "every attempt runs out its timeout and every backoff its full jitter; "
    "a participant that refuses connections fails each attempt at once, so sooner "
    "(about the backoffs alone)"
)
"""What the stated time assumes, as `saga describe` and the catalogue say it."""


def worst_case_attempts_seconds(policy: RetryPolicy, timeout: float) -> float:
    """Seconds from the first attempt to the last one's end, when every attempt lasts
    its whole `timeout` and every backoff is the longest its jitter allows."""
    attempts = max(1, policy.max_attempts)
    backoffs = sum(policy.backoff(retry, 1.0) for retry in range(1, attempts))
    return attempts * timeout + backoffs


@dataclass(frozen=True, slots=True)
class Escalation:
    """The worst case for one step, in seconds from its action's first attempt.

    `action_seconds` is the action's attempts and backoffs; `compensation_seconds` its
    own compensation's (None when the step is never compensated: a pivot, a read-only
    or `retriable` step, or a step past the pivot); `total_seconds` the sum, after which the saga is
    at `ends` (`needs_intervention`, or `rollback` for a read-only step).
    """

    action_seconds: float
    compensation_seconds: float | None
    total_seconds: float
    ends: str


def step_escalation(definition: SagaDefinition, step: Step) -> Escalation:
    """The worst case from `step`'s first attempt to the saga giving up on it.

    A step that can be undone, whose attempts run out without an answer, is
    compensated: its compensation's attempts then run out too before the saga needs
    an operator. A `retriable` step, a pivot or a step past it is never compensated:
    the saga needs an operator when its own attempts run out. A read-only step given
    up changed nothing: the rollback passes over it.
    """
    action = worst_case_attempts_seconds(definition.action_retry(step), step.timeout)
    index = definition.all_steps.index(step)
    if step.retriable or step.is_pivot or definition.is_forward_only(index):
        return Escalation(action, None, action, NEEDS_INTERVENTION)
    if step.compensation is None:
        return Escalation(action, None, action, ROLLBACK)
    compensation = worst_case_attempts_seconds(definition.compensation_retry_of(step), step.timeout)
    return Escalation(action, compensation, action + compensation, NEEDS_INTERVENTION)
