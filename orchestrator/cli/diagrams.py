"""What `saga describe` shows: a definition as text, as a Mermaid flowchart, as Graphviz.

Each function reads the same SagaDefinition the engine runs and returns a
string, so what a reader sees cannot drift from what executes. Stages come
in order; a Parallel group is one stage whose members run at the same time.
Diagrams draw the forward path with solid edges and the compensations with
dashed ones: from each step to its undo, then the undos in reverse stage
order to the failed end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from orchestrator.api import catalogue
from orchestrator.core.definition import (
    PIVOT_OUTCOMES,
    Call,
    Parallel,
    RetryPolicy,
    SagaDefinition,
    Step,
)
from orchestrator.core.escalation import ESCALATION_ASSUMES, ROLLBACK, step_escalation

FORMATS = ("text", "mermaid", "dot")


@dataclass(frozen=True, slots=True)
class _Stage:
    """One stage: a lone step (group "") or a Parallel group's members, with node ids.

    `undoable` tells, per member, whether a failure can ever run its compensation:
    not for a step without one, nor for a step after the pivot (forward only).
    """

    position: int
    group: str
    steps: tuple[Step, ...]
    ids: tuple[int, ...]
    undoable: tuple[bool, ...]


def _stages(definition: SagaDefinition) -> Iterator[_Stage]:
    for position, (stage, ids) in enumerate(zip(definition.steps, definition.stages, strict=True)):
        steps = _members(stage)
        undoable = tuple(
            _undo_label(step) is not None and not definition.is_forward_only(index)
            for step, index in zip(steps, ids, strict=True)
        )
        group = stage.name if isinstance(stage, Parallel) else ""
        yield _Stage(position, group, steps, ids, undoable)


def _members(stage: Step | Parallel) -> tuple[Step, ...]:
    return stage.steps if isinstance(stage, Parallel) else (stage,)


def _rpc(call: Call) -> str:
    return f"{call.service}.{call.method}"


def _short_rpc(call: Call) -> str:
    """`FlightService.BookFlight`: the service without its package, for diagrams."""
    return f"{call.service.rsplit('.', 1)[-1]}.{call.method}"


def _short_event(event_type: str) -> str:
    """`flight_booked`: an event type without its reverse-DNS prefix, for diagrams."""
    return event_type.rsplit(".", 1)[-1]


def _undo_label(step: Step) -> str | None:
    """What undoes the step in a diagram: its compensation RPC, or for an observed step
    the undo events it waits for (else the event a rescue publishes); None if nothing."""
    observed = step.observed
    parts: list[str] = []
    if observed is not None and observed.compensated_on:
        parts.append("on " + " | ".join(_short_event(t) for t in observed.compensated_on))
    rescue = "rescue: " if observed is not None else ""
    if step.compensation is not None:
        parts.append(rescue + _short_rpc(step.compensation))
    elif observed is not None and observed.compensation_event:
        parts.append(rescue + "publish " + _short_event(observed.compensation_event))
    return " / ".join(parts) or None


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _escalation(definition: SagaDefinition, step: Step) -> str:
    """When the saga gives up on the step at worst, with the parts that add up to it."""
    bound = step_escalation(definition, step)
    then = "the steps before it are compensated" if bound.ends == ROLLBACK else bound.ends
    parts = (
        f" (action {bound.action_seconds:.1f}s + compensation {bound.compensation_seconds:.1f}s)"
        if bound.compensation_seconds is not None
        else ""
    )
    return f"within {bound.total_seconds:.1f}s of its first attempt{parts}, then {then}"


def _policy(policy: RetryPolicy, default: RetryPolicy) -> str:
    text = (
        f"{policy.max_attempts} attempt{'s' if policy.max_attempts != 1 else ''}, backoff "
        f"{_seconds(policy.initial_backoff)} x{policy.multiplier:g} up to "
        f"{_seconds(policy.max_backoff)}, jitter {policy.jitter:.0%}"
    )
    if policy.retry_codes:
        text += f", also retrying {', '.join(sorted(policy.retry_codes))}"
    return f"{text} (saga default)" if policy is default else text


def _compensation_order(definition: SagaDefinition) -> list[str]:
    order: list[str] = []
    for stage in reversed(list(_stages(definition))):
        undone = [step.name for step, undo in zip(stage.steps, stage.undoable, strict=True) if undo]
        if not undone:
            continue
        if stage.group:
            order.append(f"group {stage.group} ({', '.join(undone)})")
        else:
            order.extend(undone)
    return order


def describe_text(definition: SagaDefinition) -> str:
    """Stages in order; each step's participant, RPCs, timeout and retry policies (for a
    tracked type: its events, windows and compensations, as the catalogue says them)."""
    if definition.tracking is not None:
        return catalogue.tracked_text(catalogue.definition_to_proto(definition))
    title = f"{definition.name} v{definition.version}"
    lines = [f"{title}: {definition.description}" if definition.description else title]
    lines.append(f"input: {definition.input_type.DESCRIPTOR.full_name}")
    if definition.deadline is not None:
        lines.append(
            f"deadline: {_seconds(definition.deadline)}; a saga still running then, "
            "before its pivot, is compensated"
        )
    lines.append("")
    for stage in _stages(definition):
        number = f"{stage.position + 1}."
        if stage.group:
            lines.append(
                f"{number} parallel group {stage.group}: "
                f"{', '.join(step.name for step in stage.steps)} run at the same time"
            )
            indent = "   "
        else:
            indent = " " * len(number) + " "
        for step, index, undoable in zip(stage.steps, stage.ids, stage.undoable, strict=True):
            prefix = f"{indent}- " if stage.group else f"{number} "
            detail = f"{indent}    " if stage.group else f"{indent}  "
            lines.append(f"{prefix}{step.name}")
            lines.append(f"{detail}participant:        {step.participant}")
            action = _rpc(step.action) if step.action else "none (observed)"
            lines.append(f"{detail}action:             {action}")
            if step.read_only:
                compensation = "none (read-only: nothing to undo, a rollback passes over it)"
            elif step.compensation is None and definition.is_forward_only(index):
                compensation = "none (forward only: the step follows the pivot)"
            elif step.compensation is None:
                compensation = "none (irreversible)"
            elif not undoable:
                compensation = f"{_rpc(step.compensation)} (never run: the step follows the pivot)"
            else:
                compensation = _rpc(step.compensation)
            lines.append(f"{detail}compensation:       {compensation}")
            if step.completion is not None:
                waits = catalogue.completion_text(catalogue.completion_to_proto(step.completion))
                lines.append(f"{detail}completes:          {waits}")
            lines.append(f"{detail}timeout:            {_seconds(step.timeout)} per attempt")
            lines.append(
                f"{detail}retry:              "
                + _policy(definition.action_retry(step), definition.retry)
            )
            if step.retriable:
                lines.append(
                    f"{detail}retriable:          every error is retried; when attempts run "
                    "out an operator decides"
                )
            if undoable:
                lines.append(
                    f"{detail}compensation retry: "
                    + _policy(definition.compensation_retry_of(step), definition.compensation_retry)
                )
            lines.append(f"{detail}gives up:           {_escalation(definition, step)}")
    order = _compensation_order(definition)
    lines.append("")
    lines.append(f"gives up within: the worst case, where {ESCALATION_ASSUMES}")
    pivot = definition.pivot_stage
    if pivot is not None:
        names = [step.name for step in _members(definition.steps[pivot])]
        lines.append(f"pivot: stage {pivot + 1} ({', '.join(names)})")
        lines.extend(f"  {outcome}" for outcome in PIVOT_OUTCOMES)
    if order:
        lines.append("on failure, completed steps are compensated: " + ", then ".join(order))
    else:
        lines.append("on failure, nothing can be compensated")
    read_only = [step.name for step in definition.all_steps if step.read_only]
    if read_only:
        lines.append("read-only, nothing to undo (no command on failure): " + ", ".join(read_only))
    return "\n".join(lines) + "\n"


def _step_label(step: Step) -> tuple[str, ...]:
    """A diagram node's lines: the step, who does what, whether it can be undone or fail."""
    observed = step.observed
    if observed is not None:
        lines = [step.name, f"{step.participant}: on {_short_event(observed.completes_on[0])}"]
        if observed.fails_on:
            lines.append("fails on " + " | ".join(_short_event(t) for t in observed.fails_on))
        lines.append(f"within {_seconds(observed.within)}")
        return tuple(lines)
    assert step.action is not None  # an orchestrated step (checked at load)
    lines = [step.name, f"{step.participant}: {_short_rpc(step.action)}"]
    if step.read_only:
        lines.append("read-only")
    elif step.compensation is None:
        lines.append("irreversible")
    if step.retriable:
        lines.append("retriable")
    return tuple(lines)


def _undo_nodes(stage: _Stage) -> Iterator[tuple[Step, str, int]]:
    """The members a failure can undo, with what undoes them and their node ids."""
    for step, node, undoable in zip(stage.steps, stage.ids, stage.undoable, strict=True):
        label = _undo_label(step)
        if undoable and label is not None:
            yield step, label, node


def _mermaid_label(*parts: str) -> str:
    return '"' + "<br/>".join(part.replace('"', "#quot;") for part in parts) + '"'


def describe_mermaid(definition: SagaDefinition) -> str:
    """A Mermaid `flowchart`: steps left to right, groups as subgraphs, undos dashed."""
    stages = list(_stages(definition))
    lines = ["flowchart LR", '    start(["start"])']
    for stage in stages:
        indent = "    "
        if stage.group:
            lines.append(
                f"    subgraph g{stage.position}[{_mermaid_label('parallel: ' + stage.group)}]"
            )
            indent = "        "
        for step, node in zip(stage.steps, stage.ids, strict=True):
            lines.append(f"{indent}s{node}[{_mermaid_label(*_step_label(step))}]")
        if stage.group:
            lines.append("    end")
    lines.append('    completed(["completed"])')
    previous = ["start"]
    for stage in stages:
        current = [f"s{node}" for node in stage.ids]
        lines.extend(f"    {a} --> {b}" for a in previous for b in current)
        previous = current
    lines.extend(f"    {a} --> completed" for a in previous)
    undo_stages = _undo_stages(stages)
    if undo_stages:
        lines.append('    failed(["failed"])')
        for stage in stages:
            for step, undo, node in _undo_nodes(stage):
                label = _mermaid_label(f"undo {step.name}", undo)
                lines.append(f"    c{node}[{label}]")
                lines.append(f"    s{node} -. undo .-> c{node}")
        for later, earlier in zip(undo_stages, [*undo_stages[1:], ["failed"]], strict=True):
            lines.extend(f"    {a} -.-> {b}" for a in later for b in earlier)
    return "\n".join(lines) + "\n"


def _undo_stages(stages: list[_Stage]) -> list[list[str]]:
    """Compensation node ids per stage, latest stage first, stages with none left out."""
    undo = [[f"c{node}" for _, _, node in _undo_nodes(stage)] for stage in reversed(stages)]
    return [ids for ids in undo if ids]


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def describe_dot(definition: SagaDefinition) -> str:
    """Graphviz `digraph` text: the same picture as the Mermaid flowchart."""
    stages = list(_stages(definition))
    title = f"{definition.name} v{definition.version}"
    lines = [
        f"digraph {_dot_quote(title)} {{",
        "    rankdir=LR;",
        f"    label={_dot_quote(title)};",
        "    labelloc=t;",
        '    fontname="Helvetica";',
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
        '    edge [fontname="Helvetica"];',
        '    start [label="start", shape=oval];',
        '    completed [label="completed", shape=oval];',
    ]
    for stage in stages:
        indent = "    "
        if stage.group:
            lines.append(f"    subgraph cluster_g{stage.position} {{")
            lines.append(f"        label={_dot_quote('parallel: ' + stage.group)};")
            lines.append("        style=dashed;")
            indent = "        "
        for step, node in zip(stage.steps, stage.ids, strict=True):
            label = "\n".join(_step_label(step))
            lines.append(f"{indent}s{node} [label={_dot_quote(label)}];")
        if stage.group:
            lines.append("    }")
    previous = ["start"]
    for stage in stages:
        current = [f"s{node}" for node in stage.ids]
        lines.extend(f"    {a} -> {b};" for a in previous for b in current)
        previous = current
    lines.extend(f"    {a} -> completed;" for a in previous)
    undo_stages = _undo_stages(stages)
    if undo_stages:
        lines.append('    failed [label="failed", shape=oval];')
        for stage in stages:
            for step, undo, node in _undo_nodes(stage):
                label = f"undo {step.name}\n{undo}"
                lines.append(f"    c{node} [label={_dot_quote(label)}, style=dashed];")
                lines.append(f'    s{node} -> c{node} [style=dashed, label="undo"];')
        for later, earlier in zip(undo_stages, [*undo_stages[1:], ["failed"]], strict=True):
            lines.extend(f"    {a} -> {b} [style=dashed];" for a in later for b in earlier)
    lines.append("}")
    return "\n".join(lines) + "\n"


def describe(definition: SagaDefinition, output_format: str) -> str:
    """The definition in one of FORMATS; ValueError for any other."""
    if output_format == "text":
        return describe_text(definition)
    if output_format == "mermaid":
        return describe_mermaid(definition)
    if output_format == "dot":
        return describe_dot(definition)
    raise ValueError(f"unknown format {output_format!r} (one of: {', '.join(FORMATS)})")
