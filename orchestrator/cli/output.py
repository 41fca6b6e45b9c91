"""How the `saga` command prints: tables and colour for people on a terminal, whole
lines (flushed at once) for pipes, remarks on stderr so stdout holds only the answer."""

from __future__ import annotations

import os
import sys

from rich.console import Console, RenderableType

from orchestrator.cli.options import PIPE_WIDTH


def stdout_console() -> Console:
    """Colour and width from the terminal; no colour under NO_COLOR or in a pipe, where
    rows are never wrapped (COLUMNS still wins)."""
    console = Console(
        no_color=True if os.environ.get("NO_COLOR") else None,
        highlight=False,
        emoji=False,
        markup=False,
    )
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    return console


def write_line(text: str) -> None:
    """One line on stdout now: a watching script must not wait for a buffer to fill."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """Human remarks go to stderr, so stdout holds only the answer."""
    print(text, file=sys.stderr, flush=True)


def table_width() -> int | None:
    """The terminal's width, which tables fit by dropping columns; None in a pipe."""
    console = stdout_console()
    return console.width if console.is_terminal else None


def show(renderable: RenderableType) -> None:
    """Print for a person; into a pipe without the padding rich leaves at line ends."""
    console = stdout_console()
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    for line in captured.get().splitlines():
        write_line(line.rstrip())
