"""The saga and step state machines, and the transition tables every saga moves by.

Both machines are built once with the `transitions` library (Enum states,
`auto_transitions=False`, terminal states final) and never get a model: their
tables are read once, here, and a saga's or step's state moves by a dict lookup
(`fire`). The machines stay the one definition of what is legal, and can be read
(or drawn) through the library's API.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any, TypeVar

from transitions import Machine

from orchestrator.core.errors import ErrorCode, SagaError
from orchestrator.core.records import SagaRecord, SagaStatus, StepRecord, StepStatus


class IllegalTransition(SagaError):
    """A trigger was fired in a state that does not allow it: a request that does not fit
    the saga's state (AIP-216), or an engine bug."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "ILLEGAL_TRANSITION"


_SAGA_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "complete", "source": SagaStatus.RUNNING, "dest": SagaStatus.COMPLETED},
    {"trigger": "compensate", "source": SagaStatus.RUNNING, "dest": SagaStatus.COMPENSATING},
    {"trigger": "fail", "source": SagaStatus.COMPENSATING, "dest": SagaStatus.FAILED},
    # Past the pivot a step that keeps failing cannot be compensated: wait for an operator.
    {"trigger": "halt", "source": SagaStatus.RUNNING, "dest": SagaStatus.FAILED},
    # Operator calls on a saga that needs intervention (guarded by the caller).
    {
        "trigger": "resume_compensation",
        "source": SagaStatus.FAILED,
        "dest": SagaStatus.COMPENSATING,
    },
    {"trigger": "resume_forward", "source": SagaStatus.FAILED, "dest": SagaStatus.RUNNING},
]

_STEP_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "start", "source": StepStatus.PENDING, "dest": StepStatus.STARTED},
    {"trigger": "succeed", "source": StepStatus.STARTED, "dest": StepStatus.COMPLETED},
    {"trigger": "fail", "source": StepStatus.STARTED, "dest": StepStatus.FAILED},
    # STARTED: the outcome is unknown (no reply, or a crash), so it is undone too.
    {
        "trigger": "compensate",
        "source": [StepStatus.COMPLETED, StepStatus.STARTED],
        "dest": StepStatus.COMPENSATING,
    },
    {"trigger": "compensated", "source": StepStatus.COMPENSATING, "dest": StepStatus.COMPENSATED},
    # A read-only step changed nothing: the rollback passes over it without a command.
    {
        "trigger": "nothing_to_undo",
        "source": [StepStatus.COMPLETED, StepStatus.STARTED],
        "dest": StepStatus.NOTHING_TO_UNDO,
    },
    {
        "trigger": "give_up",
        "source": StepStatus.COMPENSATING,
        "dest": StepStatus.COMPENSATION_FAILED,
    },
    # Operator calls.
    {
        "trigger": "retry_compensation",
        "source": StepStatus.COMPENSATION_FAILED,
        "dest": StepStatus.COMPENSATING,
    },
    {
        "trigger": "resolve_compensation",
        "source": StepStatus.COMPENSATION_FAILED,
        "dest": StepStatus.COMPENSATED,
    },
    {"trigger": "retry_forward", "source": StepStatus.FAILED, "dest": StepStatus.STARTED},
    {"trigger": "resolve_forward", "source": StepStatus.FAILED, "dest": StepStatus.COMPLETED},
    # Asynchronous steps: the action's reply accepts the work, a completion ends the wait.
    {"trigger": "accept", "source": StepStatus.STARTED, "dest": StepStatus.WAITING},
    # An observed step of a tracked saga: nothing is sent, its turn is a wait for events.
    {"trigger": "observe", "source": StepStatus.PENDING, "dest": StepStatus.WAITING},
    {"trigger": "succeed", "source": StepStatus.WAITING, "dest": StepStatus.COMPLETED},
    {"trigger": "fail", "source": StepStatus.WAITING, "dest": StepStatus.FAILED},
    # WAITING past its deadline, or when the saga stops: the outcome is unknown, undo it.
    {"trigger": "compensate", "source": StepStatus.WAITING, "dest": StepStatus.COMPENSATING},
    {
        "trigger": "nothing_to_undo",
        "source": StepStatus.WAITING,
        "dest": StepStatus.NOTHING_TO_UNDO,
    },
]


def _machine(states: type[SagaStatus] | type[StepStatus], finals: set[Any], rules: Any) -> Machine:
    return Machine(
        model=None,
        states=[{"name": s, "final": s in finals} for s in states],
        transitions=rules,
        initial=next(iter(states)),
        auto_transitions=False,
    )


SAGA_MACHINE = _machine(SagaStatus, {SagaStatus.COMPLETED, SagaStatus.FAILED}, _SAGA_TRANSITIONS)
STEP_MACHINE = _machine(
    StepStatus, {StepStatus.COMPENSATED, StepStatus.NOTHING_TO_UNDO}, _STEP_TRANSITIONS
)


TransitionTable = dict[tuple[str, str], str]


def transition_table(machine: Machine) -> TransitionTable:
    """The machine's legal moves, (trigger, source state name) -> destination state name.

    Read once from the shared `transitions` Machine, so each saga moves by a dict
    lookup instead of registering models with the machine (which costs more than
    the rest of a step's bookkeeping). tests/unit/test_machine.py checks that the
    table and the machine agree on every trigger from every state.
    """
    table: TransitionTable = {}
    for trigger, event in machine.events.items():
        for source, moves in event.transitions.items():
            for move in moves:
                if move.dest is not None:  # None would be an internal transition
                    table[(trigger, source)] = move.dest
    return table


SAGA_MOVES = transition_table(SAGA_MACHINE)
STEP_MOVES = transition_table(STEP_MACHINE)


class Model:
    """One saga's or step's current state, moved only through a transition table."""

    __slots__ = ("state",)

    def __init__(self, state: SagaStatus | StepStatus) -> None:
        self.state = state


def fire(moves: TransitionTable, model: Model, trigger: str, what: str) -> None:
    """Move `model` by `trigger`; IllegalTransition if the machine does not allow it."""
    state = model.state
    destination = moves.get((trigger, state.name))
    if destination is None:
        raise IllegalTransition(f"{what}: cannot {trigger} from {state}")
    model.state = type(state)[destination]


_Record = TypeVar("_Record", SagaRecord, StepRecord)
_LAYOUTS: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {}
_set_field = object.__setattr__


def replaced(record: _Record, **changes: Any) -> _Record:
    """`dataclasses.replace` for the machine's records (frozen, slotted, no `__post_init__`),
    at about a quarter of its cost: replace reads the fields and runs the generated
    `__init__` on every call, and a saga makes about fifteen copies. A name that is not a
    field raises AttributeError."""
    cls = type(record)
    layout = _LAYOUTS.get(cls)
    if layout is None:
        names = tuple(field.name for field in dataclasses.fields(cls))
        layout = _LAYOUTS[cls] = (names, operator.attrgetter(*names))
    names, values = layout
    copy = object.__new__(cls)
    for name, value in zip(names, values(record), strict=True):
        _set_field(copy, name, value)
    for name, value in changes.items():
        _set_field(copy, name, value)
    return copy
