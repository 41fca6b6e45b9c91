"""Crash points for tests: one variable ends a participant's process around a commit.

`SAGA_PARTICIPANT_FAILPOINT=before_commit[:n]` ends the process (`os._exit(137)`) when
the n-th command recorded by this process has its business write and its record done
but not committed; `after_commit[:n]` when the n-th is committed but not yet answered
(n is 1 when left out). Only commands that record an answer count: a repeat, an
`Invalid` or a `NotOwner` changes nothing and is not counted. The count is per process,
across every participant it serves.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Mapping

FAILPOINT_VAR = "SAGA_PARTICIPANT_FAILPOINT"
FAILPOINT_EXIT_CODE = 137
BEFORE_COMMIT = "before_commit"
AFTER_COMMIT = "after_commit"
POINTS = (BEFORE_COMMIT, AFTER_COMMIT)


@dataclasses.dataclass
class Failpoint:
    """Where to crash (`point`), and at which recorded command (`nth`, from 1)."""

    point: str
    nth: int = 1
    _counted: int = dataclasses.field(default=0, repr=False)

    def reached(self, point: str) -> None:
        """Count a recorded command reaching `point`; exit the process at the n-th."""
        if point != self.point:
            return
        self._counted += 1
        if self._counted == self.nth:
            sys.stderr.write(f"failpoint {point}: exiting at recorded command {self.nth}\n")
            sys.stderr.flush()
            os._exit(FAILPOINT_EXIT_CODE)


def parse_failpoint(spec: str) -> Failpoint | None:
    """The failpoint `spec` names (`point[:n]`); None for ""; ValueError if malformed."""
    spec = spec.strip()
    if not spec:
        return None
    point, _, count = spec.partition(":")
    if point not in POINTS:
        raise ValueError(
            f"{FAILPOINT_VAR}={spec!r}: unknown failpoint {point!r}, expected "
            f"{' or '.join(POINTS)}, optionally with :n"
        )
    try:
        nth = int(count) if count else 1
    except ValueError:
        raise ValueError(f"{FAILPOINT_VAR}={spec!r}: n must be a whole number") from None
    if nth < 1:
        raise ValueError(f"{FAILPOINT_VAR}={spec!r}: n must be at least 1")
    return Failpoint(point, nth)


def failpoint_from_environ(environ: Mapping[str, str] = os.environ) -> Failpoint | None:
    """The failpoint the environment names; servers call it at start-up to fail early."""
    return _armed(environ.get(FAILPOINT_VAR, ""))


@functools.cache
def _armed(spec: str) -> Failpoint | None:
    # One Failpoint per spec and process, so its count spans every command.
    return parse_failpoint(spec)


def reached(point: str) -> None:
    """Called by the kit at each point of every command that records an answer."""
    failpoint = failpoint_from_environ()
    if failpoint is not None:
        failpoint.reached(point)
