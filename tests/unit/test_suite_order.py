"""The suite's own order: the files it starts first must exist, or the order quietly lapses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LONGEST_FILES_FIRST

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_every_file_started_first_exists_once() -> None:
    missing = [path for path in LONGEST_FILES_FIRST if not (REPO / path).is_file()]
    assert not missing, f"tests/conftest.py names files that are gone: {missing}"
    assert len(set(LONGEST_FILES_FIRST)) == len(LONGEST_FILES_FIRST)


def test_make_test_keeps_the_order_it_is_given() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "--dist loadfile --no-loadscope-reorder" in makefile
