"""Failure injection: configured faults that make sagas take their failure paths.

`FailureInjector` rejects actions with INJECTED_FAILURE, decided from the
configuration and the command alone (never from arrival order), so a retried
or reordered command meets the same fate. Crashes around a commit are the kit's
(`participants.kit.failpoints`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from participants.kit import Rejected

ALWAYS = -1
"""For `compensation_failures`: every delivery of a compensation fails."""


class FailureInjector:
    """Rejects actions by configuration: a fixed set of ids, or a seeded rate per key.

    Transient faults too: the first `unavailable_first` deliveries of each action
    key, and the first `compensation_failures` deliveries of each compensation key
    (ALWAYS for every one), are answered UNAVAILABLE without touching any state.
    Those counts live in memory, per process.
    """

    def __init__(
        self,
        fail_rate: float = 0.0,
        seed: int = 0,
        fail_ids: Iterable[str] = (),
        unavailable_first: int = 0,
        compensation_failures: int = 0,
    ) -> None:
        self._fail_rate = fail_rate
        self._seed = seed
        self._fail_ids = frozenset(fail_ids)
        self._unavailable_first = unavailable_first
        self._compensation_failures = compensation_failures
        self._deliveries: dict[str, int] = {}

    def transient_fault(self, idempotency_key: str, *, is_action: bool) -> str | None:
        """The message of an injected UNAVAILABLE for this delivery, or None to proceed."""
        limit = self._unavailable_first if is_action else self._compensation_failures
        if limit == 0:
            return None
        delivery = self._deliveries.get(idempotency_key, 0) + 1
        self._deliveries[idempotency_key] = delivery
        if limit == ALWAYS or delivery <= limit:
            of = "every delivery" if limit == ALWAYS else f"the first {limit}"
            return f"injected transient failure: delivery {delivery} of {idempotency_key} ({of})"
        return None

    def check_action(self, idempotency_key: str, request: Message) -> None:
        """Raise INJECTED_FAILURE if this action is configured to fail."""
        if self._fail_ids:
            matched = self._fail_ids.intersection(string_fields(request))
            if matched:
                raise Rejected(
                    "INJECTED_FAILURE",
                    f"injected failure: the request names {sorted(matched)[0]!r}",
                )
        if self._fail_rate > 0.0 and self._draw(idempotency_key) < self._fail_rate:
            raise Rejected(
                "INJECTED_FAILURE",
                f"injected failure: fail rate {self._fail_rate} with seed {self._seed}",
            )

    def _draw(self, idempotency_key: str) -> float:
        """A number in [0, 1) fixed by the seed and the key, the same in every process."""
        digest = hashlib.sha256(f"{self._seed}:{idempotency_key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64


def string_fields(message: Message) -> Iterator[str]:
    """Every string value set in a message, nested messages and repeated fields included."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else (value,)
        if field.type == FieldDescriptor.TYPE_STRING:
            yield from values
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for nested in values:
                yield from string_fields(nested)
