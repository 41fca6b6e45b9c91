"""docs/cli.md's sample sessions have the shape of the real output.

Each `$ saga ...` command shown in a sample block is run, in a pipe, against a real
orchestrator and participants (a saga that completed and one refused at `rent_car`, as
in the samples), and the output is compared with the sample by its shape: ids, times,
durations and counts are masked, then the column headers of each table, the labels of
each `Label: value` line, the field names of each `saga watch` line and the wording of
the other lines must be the same. A new column, label or field in the real output that
the sample lacks (or the reverse) fails here.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import FAIL_CAR_CLASS, wait_terminal
from tests.e2e.test_cli import UNKNOWN_ID, saga_cli
from tests.support.payloads import travel
from tests.support.starting import start_saga
from tools.processes import ChildProcess

pytestmark = pytest.mark.e2e

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
SAMPLED = ("list", "get", "watch", "start")
"""The commands whose samples are checked; the terminal pictures need a terminal."""
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MASKS = (
    (UUID, "<ID>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z"), "<TIME>"),
    (re.compile(r"(\d+[hms])*\d+(\.\d+)?(ms|s|m|h|d)\b"), "<DURATION>"),
    (re.compile(r"--page-token \S+"), "--page-token <TOKEN>"),
    (re.compile(r"\b\d+\b"), "<N>"),
)


def sample_commands() -> list[tuple[str, list[str]]]:
    """Every `$ saga ...` line of a code block in docs/cli.md, with the lines it printed."""
    samples = []
    for language, block in re.findall(r"^```(\w*)\n(.*?)^```$", CLI_DOC.read_text(), re.M | re.S):
        if language:
            continue
        current: list[str] | None = None
        for line in block.splitlines():
            if line.startswith("$ "):
                current = []
                samples.append((line[2:], current))
            elif current is not None:
                current.append(line)
    return [
        (command, output)
        for command, output in samples
        if command.startswith("saga ") and command.split()[1] in SAMPLED
    ]


def masked(line: str) -> str:
    for pattern, replacement in MASKS:
        line = pattern.sub(replacement, line)
    return line


def shape(lines: list[str]) -> list[str]:
    """What must agree between a sample and a real run, one entry a line: a table's column
    headers, a label, a watch line's event and field names, or the masked wording. A
    table's rows hold values, not shape, and are passed over."""
    shaped = []
    in_table = False
    for line in lines:
        if not line.strip():
            in_table = False
        elif re.fullmatch(
            r"[A-Z][A-Z.]*( [A-Z][A-Z.]*)*( {2,}[A-Z][A-Z.]*( [A-Z][A-Z.]*)*)+", line
        ):
            shaped.append("columns: " + " | ".join(re.split(r" {2,}", line.strip())))
            in_table = True
        elif in_table and re.match(r"\S+ {2,}", line):
            continue
        elif label := re.match(r"([A-Z][a-z][\w ]*):\s{2,}", line):
            shaped.append(f"label: {label.group(1)}")
        elif watch := re.match(r"#\d+ \S+ ([A-Z_]+) ", line):
            fields = re.findall(r" (\w+)=", line)
            shaped.append(f"watch: {watch.group(1)} {' '.join(fields)}")
        else:
            shaped.append("text: " + re.sub(r"\s+", " ", masked(line)).strip())
    return shaped


def real_argv(command: str, saga_id: str) -> list[str]:
    """The sample's command with the real saga's id for the sample's (an unknown id
    stays unknown)."""
    words = command.split()[1:]
    if words[0] == "start":  # the sample abridges the payload (`{...}`): a whole one
        payload = json.dumps(travel(car_class=FAIL_CAR_CLASS))
        return [*words[: words.index("--payload")], "--payload", payload]
    return [saga_id if UUID.fullmatch(w) and w != UNKNOWN_ID else w for w in words]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite: the output's shape does not depend on the store."""
    return f"sqlite:///{tmp_path / 'saga.sqlite3'}"


@pytest.fixture
async def session(stub: pb_grpc.SagaOrchestratorStub) -> pb.Saga:
    """The samples' session: trip-3 completed, then trip-7 and trip-8 refused at rent_car,
    each started with an idempotency key; the last one."""
    last = None
    for number, car_class in ((3, "compact"), (7, FAIL_CAR_CLASS), (8, FAIL_CAR_CLASS)):
        saga_id = await start_saga(
            stub,
            travel(car_class=car_class),
            f"trip-{number}",
            idempotency_key=f"trip-{number}",
            timeout=5,
        )
        last = await wait_terminal(stub, saga_id)
    assert last is not None
    return last


async def test_the_cli_samples_have_the_shape_of_the_real_output(
    orchestrator: ChildProcess, session: pb.Saga
) -> None:
    samples = sample_commands()
    assert {command.split()[1] for command, _ in samples} == set(SAMPLED), samples
    mismatches = []
    for command, printed in samples:
        argv = real_argv(command, session.saga_id)
        # A sample of an unreachable orchestrator is run against a port nobody serves.
        unreachable = any("UNAVAILABLE" in line for line in printed)
        address = free_address() if unreachable else orchestrator.address
        result = saga_cli(*argv, "--address", address)
        want, got = shape(printed), shape((result.stdout + result.stderr).splitlines())
        if argv[0] == "watch":  # which events come when differs with timing: compare kinds
            want, got = by_event(want), by_event(got)
            got = [line for line in got if line.split()[:2] in [w.split()[:2] for w in want]]
            want = [line for line in want if line.split()[:2] in [g.split()[:2] for g in got]]
        if want != got:
            mismatches.append(f"$ {command}\n  sample: {want}\n  real:   {got}")
    assert not mismatches, "docs/cli.md samples drifted:\n" + "\n".join(mismatches)


def by_event(shaped: list[str]) -> list[str]:
    """Each kind of watch line once (`watch: EVENT fields...`), other lines as they are."""
    return sorted(set(shaped))


def free_address() -> str:
    """127.0.0.1 and a port that was free a moment ago: nothing listens there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"
