"""The `saga` command (also `python -m orchestrator`): serve the orchestrator, run the
example participants, start, list, inspect, watch and steer sagas, and describe a saga
type's definition.

Every option also reads an environment variable (named in --help), so the same
settings work from a shell, a container or a test. Client commands print tables
for people and, with --json, the API's own JSON and nothing else for scripts.

Exit codes: 0 success; 1 an error (the server's answer, or no server); 2 a usage
error; 3 `saga watch` (or `start --watch`) saw the saga end FAILED; 130 interrupted.

The package: parser (the command line), options (value parsing, exit codes), output
(printing), rendering and diagrams (how sagas and definitions look), client_commands
(talking to a running orchestrator through orchestrator.client), serve and describe
(the commands that run here; `serve` imports the engine only when it runs, so a
client command does not wait for it).

The top layer: may import everything below it. At import time it loads the client,
the core and the API's catalogue, never the engine, the store or the web console;
`serve` loads the wiring (orchestrator.server) when it runs.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from orchestrator.cli.client_commands import client_command
from orchestrator.cli.describe import describe_command
from orchestrator.cli.options import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    CliError,
    definition_modules,
    parse_duration,
    parse_point_in_time,
)
from orchestrator.cli.parser import build_parser
from orchestrator.cli.serve import serve_command
from orchestrator.cli.webhooks import webhooks_command

__all__ = ["CliError", "definition_modules", "main", "parse_duration", "parse_point_in_time"]


def _quiet_broken_pipe() -> NoReturn:
    """`saga list | head`: the reader left; say nothing, and let Python's exit not
    complain about flushing into the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(EXIT_BROKEN_PIPE)


PLUGGED_IN_COMMANDS = "saga.commands"
"""The entry-point group of commands other distributions add to `saga` (`saga participants`
is the example participants'), each `main(argv) -> int`: the CLI never imports them."""


def _plugged_in_commands() -> dict[str, importlib.metadata.EntryPoint]:
    return {
        entry.name: entry for entry in importlib.metadata.entry_points(group=PLUGGED_IN_COMMANDS)
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `saga` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    plugged_in = _plugged_in_commands().get(argv[0]) if argv else None
    if plugged_in is not None:
        return int(plugged_in.load()(argv[1:]))
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        if args.command == "serve":
            return serve_command(args)
        if args.command == "describe":
            return describe_command(args)
        if args.command == "webhooks":
            return webhooks_command(args)
        return client_command(args)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_broken_pipe()
