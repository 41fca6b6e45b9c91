"""Numbered SQL migrations, one folder per back end, and the rule for applying them.

A file `NNNN_description.sql` brings the schema to version NNNN. Each store applies
the next pending file and records its version in `schema_migrations` in one
transaction, re-reading the recorded version under its write lock first, so two
processes starting at once never apply a file twice. Files are read with
`importlib.resources`, so an installed package finds them too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from orchestrator.core.errors import ConfigurationError

APPLIED_VERSION = "SELECT coalesce(max(version), 0) FROM schema_migrations"
"""The schema version a database holds (0 before the first migration), on both back ends."""

_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: the version it brings the schema to, and its SQL."""

    version: int
    name: str
    sql: str


def load_migrations(backend: str) -> list[Migration]:
    """The back end's migrations in version order, numbered 1, 2, 3... without gaps.

    Raises `ConfigurationError` if the folder is missing or misnumbered: that is
    a packaging bug, and applying a gapped sequence would leave a wrong schema.
    """
    folder = resources.files(__name__).joinpath(backend)
    if not folder.is_dir():
        raise ConfigurationError(f"no SQL migrations for store back end {backend!r}")
    migrations = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            migrations.append(
                Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8"))
            )
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ConfigurationError(
            f"{backend} migrations must be numbered 1..N without gaps, found {versions}"
        )
    return migrations


def next_migration(migrations: list[Migration], applied_version: int) -> Migration | None:
    """The migration to apply after `applied_version`, or None when the schema is current.

    Refuses a database migrated by a newer orchestrator: this code would not
    know what the newer schema means.
    """
    latest = migrations[-1].version if migrations else 0
    if applied_version > latest:
        raise ConfigurationError(
            f"database schema version {applied_version} is newer than this orchestrator's "
            f"latest migration {latest}; upgrade the orchestrator"
        )
    for migration in migrations:
        if migration.version > applied_version:
            return migration
    return None
