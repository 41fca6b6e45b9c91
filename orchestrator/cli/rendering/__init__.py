"""How sagas, steps and transitions look to a person and to a script.

Pure functions from the API's protobuf messages to `rich` renderables, plain
lines and JSON text: no gRPC, no clock, no terminal. The `saga` command decides
where output goes; these decide what it says, so tests can render exactly what
an operator sees (colours off, any width).

The face of three modules: `formats` (names, times, JSON, cells and tables),
`sagas` (list, get, history, describe) and `watch` (the live `saga watch` view).
Imports the core, the client's constants and the API's catalogue document; never
the engine or the store.
"""

from orchestrator.cli.rendering.formats import (
    EMPTY,
    INTERVENTION_STYLE,
    SHORT_ID_LENGTH,
    event_name,
    format_age,
    format_due,
    format_duration,
    format_time,
    render_plain,
    saga_status_name,
    saga_status_text,
    short_id,
    step_status_name,
    step_status_text,
    time_of,
    to_json,
)
from orchestrator.cli.rendering.sagas import (
    REPLY_SUMMARY_LENGTH,
    definition_document,
    history_table,
    reply_summary,
    saga_header,
    saga_view,
    sagas_table,
    steps_table,
    transition_line,
)
from orchestrator.cli.rendering.watch import RECENT_EVENTS, StepProgress, WatchState, watch_view

__all__ = [
    "EMPTY",
    "INTERVENTION_STYLE",
    "RECENT_EVENTS",
    "REPLY_SUMMARY_LENGTH",
    "SHORT_ID_LENGTH",
    "StepProgress",
    "WatchState",
    "definition_document",
    "event_name",
    "format_age",
    "format_due",
    "format_duration",
    "format_time",
    "history_table",
    "render_plain",
    "reply_summary",
    "saga_header",
    "saga_status_name",
    "saga_status_text",
    "saga_view",
    "sagas_table",
    "short_id",
    "step_status_name",
    "step_status_text",
    "steps_table",
    "time_of",
    "to_json",
    "transition_line",
    "watch_view",
]
