"""Text the stores cannot hold (U+0000, surrogate code points) is refused by one walk over
the request message, naming the field; the console's query numbers are range-checked.

The walk is driven by descriptors, so these tests are too: every string field that
any request of the service can carry, at any depth, is set to a value with U+0000 in
turn, and the refusal must name exactly that field.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from orchestrator.core.errors import InvalidArgument
from orchestrator.core.payload import check_message_text, parse_typed_input, unstorable_text
from orchestrator.web.calls import CallRefused, ConsoleCalls, ListQuery, query_int
from saga.examples.v1.inputs_pb2 import OrderFulfillmentInput
from saga.v1 import orchestrator_pb2 as pb
from tests.support.payloads import order, struct, travel
from tests.support.text_fields import string_paths, with_text

pytestmark = pytest.mark.unit

SERVICE = pb.DESCRIPTOR.services_by_name["SagaOrchestrator"]


REQUEST_STRINGS = [
    pytest.param(method.input_type, names, id=f"{method.name}.{'.'.join(names)}")
    for method in SERVICE.methods
    for names in string_paths(method.input_type)
]


def test_every_request_has_string_fields_to_check():
    covered = {param.values[0].name for param in REQUEST_STRINGS}
    assert covered == {method.input_type.name for method in SERVICE.methods}


@pytest.mark.parametrize(("descriptor", "names"), REQUEST_STRINGS)
def test_u0000_in_any_request_string_field_is_refused_naming_it(descriptor, names):
    request = getattr(pb, descriptor.name)()
    path = with_text(request, names, "fine until \x00 here")
    with pytest.raises(InvalidArgument) as refused:
        check_message_text(request)
    assert refused.value.message == f"{path}: contains U+0000, which cannot be stored"
    # The same field with ordinary text (non-ASCII included) passes.
    request = getattr(pb, descriptor.name)()
    with_text(request, names, "Zoë 東京 🚀 \x7f")
    check_message_text(request)


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({**travel(), "traveller_name": "Ada\x00"}, "payload.traveller_name"),
        ({**travel(), "amount": {"currency_code": "\x00EUR"}}, "payload.amount.currency_code"),
        ({**order(), "items": [{"sku": "ok"}, {"sku": "s\x00"}]}, "payload.items[1].sku"),
        ({"deep": [[{"with space": ["\x00"]}]]}, 'payload.deep[0][0]["with space"][0]'),
        ({"na\x00me": 1}, 'payload: the key "na\\u0000me"'),
        ({"outer": {"in\x00ner": "x"}}, 'payload.outer: the key "in\\u0000ner"'),
    ],
    ids=["value", "nested", "list-item", "odd-keys", "top-key", "nested-key"],
)
def test_u0000_in_payload_values_and_keys_is_refused_by_path(payload, path):
    request = pb.StartSagaRequest(saga_type="t", correlation_id="c", payload=struct(payload))
    with pytest.raises(InvalidArgument) as refused:
        check_message_text(request)
    assert refused.value.message.startswith(f"{path}")
    assert "contains U+0000, which cannot be stored" in refused.value.message
    assert "Ada" not in refused.value.message  # never the value itself


def test_u0000_in_a_packed_input_is_refused_by_its_field_path():
    typed = OrderFulfillmentInput(order_id="o-1", customer_id="c", shipping_address="x")
    typed.items.add(sku="fine", quantity=1)
    typed.items.add(sku="bad\x00", quantity=1)
    typed.amount.currency_code = "EUR"
    typed.amount.amount_minor = 5
    packed = any_pb2.Any()
    packed.Pack(typed)
    with pytest.raises(InvalidArgument) as refused:
        parse_typed_input(OrderFulfillmentInput, packed)
    assert refused.value.message == "input.items[1].sku: contains U+0000, which cannot be stored"


def _map_message() -> type[Message]:
    """A message with a map<string, string> and a map<int32, string>, as a saga type's
    input may have (the example inputs have none)."""
    file = descriptor_pb2.FileDescriptorProto(name="maps_test.proto", package="maps.test")
    file.syntax = "proto3"
    holder = file.message_type.add(name="Holder")
    for number, (name, key_type) in enumerate(
        [("labels", FieldDescriptor.TYPE_STRING), ("by_number", FieldDescriptor.TYPE_INT32)], 1
    ):
        entry = holder.nested_type.add(name=f"{name.title().replace('_', '')}Entry")
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, type=key_type, label=1)
        entry.field.add(name="value", number=2, type=FieldDescriptor.TYPE_STRING, label=1)
        holder.field.add(
            name=name,
            number=number,
            type=FieldDescriptor.TYPE_MESSAGE,
            label=3,
            type_name=f".maps.test.Holder.{entry.name}",
        )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("maps.test.Holder"))


@pytest.mark.parametrize(
    ("fill", "expected"),
    [
        (lambda m: m.labels.__setitem__("team", "a\x00"), "input.labels.team: contains U+0000"),
        (lambda m: m.labels.__setitem__("a b", "\x00"), 'input.labels["a b"]: contains U+0000'),
        (lambda m: m.labels.__setitem__("k\x00", "v"), 'input.labels: the key "k\\u0000"'),
        (lambda m: m.by_number.__setitem__(7, "\x00"), "input.by_number[7]: contains U+0000"),
    ],
    ids=["value", "odd-key-value", "key", "int-key-value"],
)
def test_u0000_in_map_keys_and_values_is_refused(fill: Any, expected: str):
    message = _map_message()()
    fill(message)
    with pytest.raises(InvalidArgument) as refused:
        check_message_text(message, "input")
    assert refused.value.message.startswith(expected)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain", None),
        ("Zoë 😀 \u200b \ufffd \U0010ffff", None),
        ("\x00", "contains U+0000"),
        ("a\ud800", "contains U+D800, a surrogate code point and no character"),
        ("\udfff", "contains U+DFFF, a surrogate code point and no character"),
        ("\ud83d\ude00", "contains U+D83D, a surrogate code point and no character"),
    ],
)
def test_unstorable_text(text: str, problem: str | None):
    assert unstorable_text(text) == problem


class _RefusingServicer:
    """Reached only if the console let a request through."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} reached the servicer")


@pytest.mark.parametrize("field", ["reason", "requested_by", "step", "saga_id"])
async def test_console_refuses_a_surrogate_before_it_becomes_protobuf(field: str):
    values = {"saga_id": "6f1c2a9e-0b7d-4c55-9a43-2f1e8d7c6b5a", "step": "s", "reason": "r"}
    values["requested_by"] = "ops"
    values[field] = "x\ud800y"
    calls = ConsoleCalls(_RefusingServicer())  # type: ignore[arg-type]
    with pytest.raises(CallRefused) as refused:
        await calls.resolve(**values)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.message.startswith(f"{field}: contains U+D800")
    assert refused.value.reason == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("page_size", "", 0),
        ("page_size", "25", 25),
        ("page_size", "1000", 1000),
        ("after_seq", "9223372036854775807", 2**63 - 1),
        ("after_seq", "0", 0),
    ],
)
def test_console_integer_parameters_in_range(name: str, text: str, value: int):
    assert query_int(name, text) == value


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("page_size", "1001"),
        ("page_size", "-1"),
        ("page_size", "99999999999999999999"),
        ("page_size", "1e3"),
        ("page_size", "12abc"),
        ("page_size", " 5"),
        ("page_size", "\u0665"),  # an Arabic-Indic five, which int() would take
        ("page_size", "9" * 5000),  # past int()'s digit limit
        ("after_seq", "9223372036854775808"),
        ("after_seq", "-1"),
        ("after_seq", "1.5"),
    ],
)
def test_console_integer_parameters_out_of_range_or_not_numbers(name: str, text: str):
    with pytest.raises(CallRefused) as refused:
        query_int(name, text)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.message.startswith(f"{name} must be a whole number from 0 to ")
    assert len(refused.value.message) < 200


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_console_times_outside_timestamp_range_are_refused(moment: str):
    from datetime import datetime

    query = ListQuery(created_after=datetime.fromisoformat(moment))
    with pytest.raises(CallRefused) as refused:
        query.request()
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "created_after lies outside" in refused.value.message
