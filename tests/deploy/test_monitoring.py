"""The shipped alerting rules and Grafana dashboard, checked against the real thing.

promtool checks the rules (and the dashboard's queries, as recording rules); a running
orchestrator on PostgreSQL with the webhooks sink, after a saga that completes and one
that gets stuck, must export every metric the rules and panels name; and a real
Prometheus server scraping it fires SagasNeedIntervention.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.conftest import require_postgres_url, url_with_search_path
from tests.deploy.monitoring import (
    DASHBOARD_FILE,
    RULE_TESTS_FILE,
    RULES_FILE,
    dashboard_expressions,
    metric_names,
    prometheus_server,
    required_tool,
    rule_expressions,
)
from tests.e2e.conftest import wait_terminal
from tests.support.payloads import struct, travel
from tools.processes import ChildProcess, orchestrator_process, participants_process

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

STUCK_FLIGHT = "NO-FLY"
"""The flight the participants refuse; the hotel's cancellation always fails after it."""
PARTICIPANTS = {
    ("hotel",): ["--compensation-failures", "-1"],
    ("flight",): ["--fail-ids", STUCK_FLIGHT],
    ("payment",): [],
}


# --- the files themselves --------------------------------------------------------------


def test_the_rules_file_passes_promtool_check():
    promtool = required_tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in checked.stdout


def test_the_rules_pass_their_promtool_unit_tests():
    promtool = required_tool("promtool")
    tested = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def alert_test_cases() -> list[dict[str, Any]]:
    """Every `alert_rule_test` case of the rules' unit tests."""
    document = yaml.safe_load(RULE_TESTS_FILE.read_text())
    assert document["rule_files"] == [RULES_FILE.name]
    return [case for test in document["tests"] for case in test.get("alert_rule_test", [])]


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not():
    cases = alert_test_cases()
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    alerts = set(rule_expressions())
    assert fired == alerts, f"never fired: {sorted(alerts - fired)}"
    assert quiet == alerts, f"never checked quiet: {sorted(alerts - quiet)}"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path):
    promtool = required_tool("promtool")
    recorded = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": expression}
                    for n, expression in enumerate(dashboard_expressions())
                ],
            }
        ]
    }
    as_rules = tmp_path / "dashboard.rules.yml"
    as_rules.write_text(yaml.safe_dump(recorded))
    checked = subprocess.run(
        [promtool, "check", "rules", str(as_rules)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_shows_what_an_operator_watches():
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    named = {name for expression in dashboard_expressions() for name in metric_names(expression)}
    assert dashboard["uid"] == "saga-orchestrator"
    assert {
        "saga_duration_seconds_count",  # throughput by outcome
        "saga_duration_seconds_bucket",  # latency
        "saga_in_flight",
        "saga_needing_intervention",
        "saga_step_retries_total",
        "saga_store_pool_pool_available",
        "saga_events_oldest_pending_seconds",
        "saga_tracked_events_total",  # choreographies: events by verdict
        "saga_tracked_type",  # flagged choreographies
    } <= named


def test_every_alert_has_a_runbook_entry_in_the_operations_guide():
    guide = DOCS.read_text()
    document = yaml.safe_load(RULES_FILE.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            assert anchor == rule["alert"].lower()
            # A heading per alert: GitHub makes its lower-cased name the anchor.
            assert f"\n#### {rule['alert']}\n" in guide, rule["alert"]


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        (
            'sum by (le) (rate(saga_step_duration_seconds_bucket{kind="a", x=~"b|c"}[5m]))',
            {"saga_step_duration_seconds_bucket"},
        ),
        ("saga_in_flight >= saga_in_flight_limit", {"saga_in_flight", "saga_in_flight_limit"}),
        (
            "max by (instance) (up) == 1 and on (instance) foo:bar offset 5m > 0.5e3",
            {"up", "foo:bar"},
        ),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expression: str, names: set[str]):
    assert metric_names(expression) == names


# --- a running orchestrator ------------------------------------------------------------


@dataclass
class Running:
    orchestrator: ChildProcess
    metrics_address: str
    stuck_saga_id: str


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A schema of this module's own on the test PostgreSQL server."""
    base_url = require_postgres_url()
    schema = f"saga_test_{secrets.token_hex(6)}"
    with psycopg.connect(base_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield url_with_search_path(base_url, schema)
    finally:
        with psycopg.connect(base_url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def run_two_sagas(address: str) -> str:
    """One saga that completes and one that needs intervention; returns the stuck one's id."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        ids = []
        for number, flight in enumerate(["LH400", STUCK_FLIGHT]):
            reply = await stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="retry_probe",
                    correlation_id=f"monitoring-{number}",
                    payload=struct(travel(f"customer-{number}", flight=flight)),
                ),
                timeout=10,
            )
            ids.append(reply.saga_id)
        done, stuck = [await wait_terminal(stub, saga_id, timeout=60) for saga_id in ids]
    assert done.status == pb.SAGA_STATUS_COMPLETED
    assert stuck.status == pb.SAGA_STATUS_FAILED and stuck.needs_intervention
    return stuck.saga_id


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("monitoring")
    started: list[ChildProcess] = []
    try:
        addresses: dict[str, str] = {}
        for services, flags in PARTICIPANTS.items():
            process = participants_process(workdir, services, flags, name="-".join(services))
            started.append(process.start())
            addresses.update(process.info["services"])
        orchestrator = orchestrator_process(
            workdir,
            database_url,
            addresses,
            env={"SAGA_DEFINITIONS": "tests.support.policy_sagas"},
            extra_args=["--metrics-listen", "127.0.0.1:0", "--webhooks"],
        )
        started.append(orchestrator.start())
        stuck = asyncio.run(run_two_sagas(orchestrator.address))
        yield Running(orchestrator, orchestrator.info["metrics_address"], stuck)
    finally:
        for process in reversed(started):
            process.stop()


def scraped_families(address: str) -> dict[str, str]:
    """Each metric family of a scrape, by name, with its type."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def exported(name: str, families: dict[str, str]) -> bool:
    """Whether a name a query selects is a series of one of the scraped families."""
    if families.get(name) in ("gauge", "untyped"):
        return True
    suffixes = {"_total": ("counter",), "_bucket": ("histogram",)}
    suffixes |= {"_count": ("histogram", "summary"), "_sum": ("histogram", "summary")}
    for suffix, types in suffixes.items():
        if name.endswith(suffix) and families.get(name.removesuffix(suffix)) in types:
            return True
    return False


@pytest.mark.e2e
@pytest.mark.postgres
def test_every_metric_the_rules_and_the_dashboard_name_is_exported(running: Running):
    families = scraped_families(running.metrics_address)
    named = {
        name
        for expression in [*rule_expressions().values(), *dashboard_expressions()]
        for name in metric_names(expression)
    }
    assert len(named) > 20, named  # the reading found the names, not nothing
    missing = sorted(name for name in named if not exported(name, families))
    assert missing == [], f"named but not exported: {missing}"


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.slow
def test_prometheus_fires_needs_intervention_for_a_stuck_saga(running: Running, tmp_path: Path):
    # The shipped rules, with every `for:` cut to 1 s so a test need not wait minutes.
    rules = re.sub(r"(?m)^(\s+for:) \S+$", r"\1 1s", RULES_FILE.read_text())
    assert rules != RULES_FILE.read_text()
    (tmp_path / "rules.yml").write_text(rules)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {
                "job_name": "saga-orchestrator",
                "static_configs": [{"targets": [running.metrics_address]}],
            }
        ],
    }
    with prometheus_server(tmp_path, config) as prometheus:
        alert = prometheus.wait_for_alert(
            "SagasNeedIntervention", "firing", saga_type="retry_probe"
        )

    assert alert["labels"]["severity"] == "critical"
    assert float(alert["value"]) == 1
    assert (
        "saga list --needs-intervention --type retry_probe" in (alert["annotations"]["description"])
    )
