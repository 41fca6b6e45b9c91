"""A pool of units per item (seats per flight, cars per location and class): an action
takes some, its compensation gives them back, a read reports what is free.

The table is `<table>(<keys>..., <total>, <available>)` with a CHECK that keeps
`available` between 0 and `total`; names come from code, never from requests, so they are
formatted into SQL, and every value is a bound parameter. Works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from participants.kit.database import Tx
from participants.kit.errors import Rejected


@dataclasses.dataclass(frozen=True)
class Pool:
    """`item` describes one item in messages, with the key columns as fields
    (`"flight {flight_number}"`); `unit` is what is counted (`"seat"`). A shortage is
    refused with `unknown_reason` (no such item) or `exhausted_reason` (too few left)."""

    table: str
    keys: tuple[str, ...]
    total: str
    available: str
    item: str
    unit: str
    unknown_reason: str
    exhausted_reason: str

    def create_statement(self) -> str:
        """CREATE TABLE IF NOT EXISTS for the pool."""
        keys = ", ".join(f"{key} TEXT NOT NULL" for key in self.keys)
        return f"""
            CREATE TABLE IF NOT EXISTS {self.table} (
                {keys},
                {self.total} INTEGER NOT NULL,
                {self.available} INTEGER NOT NULL
                    CHECK ({self.available} BETWEEN 0 AND {self.total}),
                PRIMARY KEY ({", ".join(self.keys)})
            )
        """

    def seed(self, tx: Tx, items: Iterable[tuple[str, ...]], capacity: int) -> None:
        """Give each new item `capacity` units; items already there keep theirs."""
        columns = (*self.keys, self.total, self.available)
        for item in items:
            tx.execute(
                f"INSERT INTO {self.table} ({', '.join(columns)})"
                f" VALUES ({', '.join('%s' for _ in columns)}) ON CONFLICT DO NOTHING",
                (*item, capacity, capacity),
            )

    def take(self, tx: Tx, key: tuple[str, ...], units: int) -> None:
        """Take `units` of the item, or refuse (Rejected) when it is unknown or too few
        are left. Several takes in one handler are all or nothing: a refusal rolls back."""
        described = self.describe(key)
        row = tx.one(f"SELECT {self.available} FROM {self.table} WHERE {self._where}", key)
        if row is None:
            raise Rejected(
                self.unknown_reason, f"{described} does not exist", metadata=self._fields(key)
            )
        if row[0] < units:
            raise Rejected(
                self.exhausted_reason,
                f"{described} has {row[0]} {self.unit}(s) left, {units} requested",
                metadata=self._fields(key),
            )
        self._add(tx, key, -units)

    def give_back(self, tx: Tx, key: tuple[str, ...], units: int) -> None:
        """Return `units` taken from the item."""
        self._add(tx, key, units)

    def levels(self, tx: Tx) -> list[Any]:
        """Every item's row (key columns, total, available), in key order."""
        rows = tx.execute(f"SELECT * FROM {self.table} ORDER BY {', '.join(self.keys)}")
        return list(rows.fetchall())

    def describe(self, key: tuple[str, ...]) -> str:
        """The item in words, e.g. "flight LH400"."""
        return self.item.format(**self._fields(key))

    @property
    def _where(self) -> str:
        return " AND ".join(f"{key} = %s" for key in self.keys)

    def _fields(self, key: tuple[str, ...]) -> dict[str, str]:
        return dict(zip(self.keys, key, strict=True))

    def _add(self, tx: Tx, key: tuple[str, ...], units: int) -> None:
        tx.execute(
            f"UPDATE {self.table} SET {self.available} = {self.available} + %s WHERE {self._where}",
            (units, *key),
        )
