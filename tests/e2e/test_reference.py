"""docs/reference.md is complete and its hosting listing runs as written.

Every field of each public DSL dataclass (`orchestrator.__all__`) and every flag of
`saga serve` and `saga participants` must appear on the page, a flag on one table row
with its environment variable; the listing of two participant services in one process
is run from a copy of the walkthrough's project and answered on both services.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import orchestrator
from orchestrator.cli.parser import build_parser
from participants.__main__ import build_parser as participants_parser
from saga.participants.shipping.v1 import shipping_pb2
from tests.e2e.test_own_saga import PROJECT, PrintedAddressProcess, with_pythonpath

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"
HOSTING_LISTING = "two_services.py"


def section(heading: str) -> str:
    """The page's text under `heading` up to the next heading of the same or higher level."""
    text = REFERENCE.read_text()
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    ends = [m.start() for m in re.finditer(f"^#{{1,{len(level)}}} ", text[start + 1 :], re.M)]
    return text[start : start + 1 + ends[1]] if len(ends) > 1 else text[start:]


def public_dataclasses() -> list[type]:
    return [
        getattr(orchestrator, name)
        for name in orchestrator.__all__
        if dataclasses.is_dataclass(getattr(orchestrator, name))
    ]


def serve_parser() -> argparse.ArgumentParser:
    parser = build_parser("serve")
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve: argparse.ArgumentParser = commands.choices["serve"]
    return serve


def flags_and_variables(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """(flag, environment variable) of each option, the variable as its help names it."""
    found = []
    for option in parser._actions:
        if "--help" in option.option_strings:
            continue
        variable = re.search(r"env (SAGA_\w+)", option.help or "")
        assert variable, f"{option.option_strings[0]} names no environment variable in its help"
        found.append((option.option_strings[0], variable.group(1)))
    return found


@pytest.mark.unit
def test_every_public_dsl_dataclass_field_is_on_the_page() -> None:
    missing = []
    for kind in public_dataclasses():
        rows = section(f"### `{kind.__name__}`")
        missing += [
            f"{kind.__name__}.{field.name}"
            for field in dataclasses.fields(kind)
            if f"\n| `{field.name}` |" not in rows
        ]
    assert not missing, f"docs/reference.md does not document: {missing}"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("heading", "parser"),
    [
        ("## `saga serve`", serve_parser),
        ("## `saga participants`", lambda: participants_parser({})),
    ],
)
def test_every_flag_is_on_the_page_with_its_variable(
    heading: str, parser: Callable[[], argparse.ArgumentParser]
) -> None:
    rows = section(heading)
    missing = [
        f"{flag} ({variable})"
        for flag, variable in flags_and_variables(parser())
        if f"\n| `{flag}` | `{variable}` |" not in rows
    ]
    assert not missing, f"{heading} in docs/reference.md lacks: {missing}"


def hosting_listing() -> str:
    text = REFERENCE.read_text()
    match = re.search(
        rf"^\*\*`{HOSTING_LISTING}`\*\*.*?\n\n```python\n(.*?)^```$", text, re.M | re.S
    )
    assert match, f"docs/reference.md lists no {HOSTING_LISTING}"
    return match.group(1)


@pytest.mark.e2e
def test_the_hosting_listing_serves_both_services_on_one_port(tmp_path: Path) -> None:
    (tmp_path / HOSTING_LISTING).write_text(hosting_listing())
    (tmp_path / "loyalty_participant.py").write_text(
        (PROJECT / "loyalty_participant.py").read_text()
    )
    process = PrintedAddressProcess(
        "two_services",
        [sys.executable, HOSTING_LISTING, "0"],
        cwd=tmp_path,
        log_dir=tmp_path,
        env=with_pythonpath(PROJECT),
    )
    try:
        process.start()
        with grpc.insecure_channel(process.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in (
                "acme.loyalty.v1.LoyaltyService",
                "saga.participants.shipping.v1.ShippingService",
            ):
                answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
            shipments = channel.unary_unary(
                "/saga.participants.shipping.v1.ShippingService/GetShipments",
                request_serializer=shipping_pb2.GetShipmentsRequest.SerializeToString,
                response_deserializer=shipping_pb2.GetShipmentsResponse.FromString,
            )(shipping_pb2.GetShipmentsRequest(), timeout=10)
            assert list(shipments.shipments) == []
    finally:
        process.stop()
    assert (tmp_path / "loyalty.db").exists() and (tmp_path / "shipping.db").exists()
