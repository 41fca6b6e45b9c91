"""Named crash points for crash tests, armed only by configuration.

`SAGA_FAILPOINT=<name>[:<n>]` makes the process end at once (`os._exit(137)`, as a
SIGKILL would: no cleanup, no flush) the n-th time (default the first) execution
passes the point called `name`. Unset, `hit` is one comparison with None.

Points in the orchestrator:
- `step_started`: a step's start is committed, its command not yet sent.
- `reply_received`: a participant replied, its result not yet committed.
- `compensation_started`: a compensation's start is committed, not yet sent
  (`compensation_started:2` dies between the first and second compensation).
- `saga_finished`: the saga's terminal status is committed.
"""

from __future__ import annotations

import os
import sys

ENV_VAR = "SAGA_FAILPOINT"
EXIT_CODE = 137

POINTS = frozenset({"step_started", "reply_received", "compensation_started", "saga_finished"})


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV_VAR}={spec!r}: unknown point; known: {', '.join(sorted(POINTS))}")
    return name, int(count) if count else 1


_armed = _parse(os.environ.get(ENV_VAR))
_hits = 0


def hit(name: str) -> None:
    """Die here if this is the armed point's n-th pass."""
    global _hits
    if _armed is None or _armed[0] != name:
        return
    _hits += 1
    if _hits == _armed[1]:
        sys.stderr.write(f"failpoint {name} hit {_hits} time(s): exiting\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
