"""The auth file and the role rules: pure logic, no network."""

from __future__ import annotations

import re

import pytest

from orchestrator.security.auth import (
    CALLBACK_RULES,
    EVENTS_RULES,
    INGEST_RULES,
    ORCHESTRATOR_RULES,
    WEBHOOK_RULES,
    Role,
    parse_auth_file,
    participant_rules,
    token_digest,
    webhook_rules,
)
from participants.kit.tls import SecurityConfigError
from participants.registry import SERVICES
from saga.participants.common.v1 import callbacks_pb2
from saga.v1 import events_admin_pb2, ingest_pb2, orchestrator_pb2, webhooks_pb2

pytestmark = pytest.mark.unit

GOOD = f"""
# comment
[[caller]]
name = "alice"
roles = ["client", "reader"]
token_sha256 = "{token_digest("alice-token")}"

[[caller]]
name = "orchestrator"
roles = ["orchestrator"]
certificate = "orchestrator.saga.internal"
"""


def test_a_token_finds_its_caller_and_a_certificate_name_finds_its_own():
    callers = parse_auth_file(GOOD, "auth.toml")

    alice = callers.caller_with_token("alice-token")
    assert alice is not None and alice.name == "alice"
    assert alice.roles == {Role.CLIENT, Role.READER}
    assert callers.caller_with_token("alice-token ") is None
    assert callers.caller_with_token("") is None
    robot = callers.caller_with_certificate(["localhost", "orchestrator.saga.internal"])
    assert robot is not None and robot.roles == {Role.ORCHESTRATOR}
    assert callers.caller_with_certificate(["alice"]) is None


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[[caller]]\nname = \"a\"\nroles = client\n", 3, "not valid TOML"),
        ('[[caller]]\nname = "a"\nroles = ["admin"]\ncertificate = "a"\n', 3, "roles"),
        ('[[caller]]\nname = "a"\nroles = ["client"]\ntoken_sha256 = "ab"\n', 4, "lowercase hex"),
        ('\n[[caller]]\nname = "a"\nroles = ["client"]\n', 2, "token_sha256 or certificate"),
        ('[[caller]]\nname = "a"\nroles = ["client"]\ncertificate = "a"\n\n'
         '[[caller]]\nname = "a"\nroles = ["client"]\ncertificate = "b"\n', 7, "listed twice"),
        ('[[caller]]\nname = "a"\nrole = ["client"]\ncertificate = "a"\n', 3, "unknown key 'role'"),
        ('[[caller]]\nname = "a"\nroles = ["client"]\ncertificate = "a"\nnamespaces = []\n',
         5, "non-empty list"),
        ('[[caller]]\nname = "a"\nroles = ["client"]\ncertificate = "a"\n'
         'namespaces = ["Billing"]\n', 5, "'Billing' must be 1 to 63 lowercase"),
        ('[[caller]]\nname = "a"\nroles = ["client"]\ncertificate = "a"\nnamespaces = "all"\n',
         5, '"*" or a non-empty list'),
    ],
    ids=[
        "syntax", "unknown-role", "bad-digest", "no-proof", "duplicate-name", "unknown-key",
        "no-namespaces", "bad-namespace", "namespaces-not-a-list",
    ],
)  # fmt: skip
def test_a_malformed_file_is_refused_naming_its_line(text, line, words):
    with pytest.raises(SecurityConfigError) as refused:
        parse_auth_file(text, "auth.toml")

    message = str(refused.value)
    assert words in message
    assert re.search(rf"\bline {line}\b", message), message


@pytest.mark.parametrize(
    ("line", "namespaces"),
    [
        ("", frozenset({"default"})),
        ('namespaces = ["billing", "shipping-eu"]', frozenset({"billing", "shipping-eu"})),
        ('namespaces = "*"', None),
        ('namespaces = ["*"]', None),
    ],
    ids=["default", "list", "star", "star-in-a-list"],
)
def test_a_caller_is_bound_to_its_namespaces_default_when_unnamed(line, namespaces):
    text = f'[[caller]]\nname = "a"\nroles = ["client"]\ncertificate = "a"\n{line}\n'

    caller = parse_auth_file(text, "auth.toml").caller_with_certificate(["a"])

    assert caller is not None and caller.namespaces == namespaces
    assert caller.may_use("billing") == (namespaces is None or "billing" in namespaces)


def test_every_orchestrator_rpc_has_a_rule_and_no_rule_names_a_missing_rpc():
    methods = set(orchestrator_pb2.DESCRIPTOR.services_by_name["SagaOrchestrator"].methods_by_name)

    assert methods == set(ORCHESTRATOR_RULES), "each RPC needs a line in ORCHESTRATOR_RULES"


def test_every_webhook_rpc_has_a_rule_and_only_operators_may_call_it():
    service = webhooks_pb2.DESCRIPTOR.services_by_name["SagaWebhooks"]

    assert set(service.methods_by_name) == set(WEBHOOK_RULES), "each RPC needs a rule"
    rules = webhook_rules(service)
    assert len(rules) == len(service.methods_by_name)
    assert set(rules.values()) == {frozenset({Role.OPERATOR})}


def test_every_events_rpc_has_a_rule_reads_for_readers_changes_for_operators_only():
    methods = set(events_admin_pb2.DESCRIPTOR.services_by_name["SagaEvents"].methods_by_name)

    assert methods == set(EVENTS_RULES), "each SagaEvents RPC needs a line in EVENTS_RULES"
    assert EVENTS_RULES["ListEventSinks"] == {Role.OPERATOR, Role.READER}
    assert EVENTS_RULES["ListDeadEvents"] == {Role.OPERATOR, Role.READER}
    assert EVENTS_RULES["ReplayEvents"] == {Role.OPERATOR}
    assert EVENTS_RULES["RequeueDeadEvents"] == {Role.OPERATOR}


def test_every_callback_rpc_is_for_participants_and_operators_only():
    methods = set(callbacks_pb2.DESCRIPTOR.services_by_name["SagaCallbacks"].methods_by_name)

    assert methods == set(CALLBACK_RULES), "each RPC needs a line in CALLBACK_RULES"
    assert set(CALLBACK_RULES.values()) == {frozenset({Role.PARTICIPANT, Role.OPERATOR})}


def test_participant_commands_are_the_orchestrators_and_everything_else_is_a_read():
    rules = participant_rules(spec.descriptor for spec in SERVICES.values())

    payment = "/saga.participants.payment.v1.PaymentService/"
    assert rules[payment + "ChargePayment"] == {Role.ORCHESTRATOR}
    assert rules[payment + "RefundPayment"] == {Role.ORCHESTRATOR}
    assert rules[payment + "GetPaymentLedger"] == {Role.READER, Role.OPERATOR}
    assert len(rules) == sum(len(spec.descriptor.methods) for spec in SERVICES.values())


def test_every_ingest_rpc_has_a_rule_senders_ingest_readers_list_anomalies():
    service = ingest_pb2.DESCRIPTOR.services_by_name["SagaEventIngest"]

    assert set(service.methods_by_name) == set(INGEST_RULES), "each RPC needs a line"
    assert INGEST_RULES["IngestEvents"] == {Role.PARTICIPANT, Role.OPERATOR}
    assert INGEST_RULES["ListEventAnomalies"] == {Role.OPERATOR, Role.READER}


def test_the_server_policy_holds_the_ingest_rules(tmp_path):
    from orchestrator.api.grpc_server import auth_policy

    path = tmp_path / "auth.toml"
    path.write_text(GOOD)
    policy = auth_policy(path)
    assert policy is not None
    assert policy.rules["/saga.v1.SagaEventIngest/IngestEvents"] == INGEST_RULES["IngestEvents"]
    assert (
        policy.rules["/saga.v1.SagaEventIngest/ListEventAnomalies"]
        == INGEST_RULES["ListEventAnomalies"]
    )
