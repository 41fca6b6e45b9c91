"""Lock wake-ups within one process: a release wakes the sleeper first in line for the
key (and whoever is asking the store right now), never the whole queue, and keys are
remembered only while a saga watches them."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.engine.wakeups import RECENT_RELEASES, KeyWakeups

pytestmark = pytest.mark.unit

BOUND = 30.0
"""Sleeps in these tests end by a wake-up; the bound only stops a broken test."""


async def asleep(wakeups: KeyWakeups, count: int) -> None:
    """Let the sleepers just created run up to their sleep (one turn of the loop)."""
    await asyncio.sleep(0)
    assert wakeups.waiting == count


async def test_a_release_wakes_only_the_sleeper_first_in_line_for_the_key():
    wakeups = KeyWakeups()
    with wakeups.watch("s-late", ["k"]) as late, wakeups.watch("s-first", ["k", "j"]) as first:
        late.arm()
        first.arm()
        sleeping_late = asyncio.create_task(wakeups.sleep(late, 9, BOUND))
        sleeping_first = asyncio.create_task(wakeups.sleep(first, 4, BOUND))
        await asleep(wakeups, 2)
        wakeups.wake(["k"])
        await asyncio.wait_for(sleeping_first, BOUND)
        assert first.woken and not late.woken
        wakeups.wake(["k"])  # the first took the key and released it: the next one
        await asyncio.wait_for(sleeping_late, BOUND)
        assert late.woken


async def test_a_release_while_the_store_is_being_asked_is_not_missed():
    wakeups = KeyWakeups()
    with wakeups.watch("s-1", ["k"]) as watch, wakeups.watch("s-0", ["k"]) as ahead:
        ahead.arm()
        sleeping_ahead = asyncio.create_task(wakeups.sleep(ahead, 1, BOUND))
        await asleep(wakeups, 1)
        watch.arm()  # asking the store now, no ticket yet
        wakeups.wake(["k"])
        assert watch.woken and ahead.woken
        await asyncio.wait_for(wakeups.sleep(watch, 2, BOUND), BOUND)
        await asyncio.wait_for(sleeping_ahead, BOUND)


async def test_an_operator_change_wakes_that_saga_wherever_it_is_in_line():
    wakeups = KeyWakeups()
    with wakeups.watch("s-0", ["k"]) as ahead, wakeups.watch("s-1", ["k"]) as behind:
        ahead.arm()
        behind.arm()
        sleeping_ahead = asyncio.create_task(wakeups.sleep(ahead, 1, BOUND))
        sleeping_behind = asyncio.create_task(wakeups.sleep(behind, 2, BOUND))
        await asleep(wakeups, 2)
        wakeups.wake_saga("s-1")
        await asyncio.wait_for(sleeping_behind, BOUND)
        assert not ahead.woken
        wakeups.wake_all()
        await asyncio.wait_for(sleeping_ahead, BOUND)


def test_keys_are_remembered_only_while_watched():
    wakeups = KeyWakeups()
    for n in range(1000):
        with wakeups.watch(f"s-{n}", [f"customer:{n}", "shared"]):
            assert wakeups.watched_keys() == 2
        wakeups.wake([f"customer:{n}", "shared"])
    assert wakeups.watched_keys() == 0


async def test_a_first_in_line_that_stops_waiting_without_its_keys_wakes_the_next():
    wakeups = KeyWakeups()
    with wakeups.watch("s-1", ["k"]) as behind:
        behind.arm()
        sleeping_behind = asyncio.create_task(wakeups.sleep(behind, 2, BOUND))
        with wakeups.watch("s-0", ["k"]) as first:
            first.arm()
            sleeping_first = asyncio.create_task(wakeups.sleep(first, 1, BOUND))
            await asleep(wakeups, 2)
            wakeups.wake(["k"])
            await asyncio.wait_for(sleeping_first, BOUND)
            assert not behind.woken
        # s-0 left (its locks broken, its wait expired) without taking the key.
        await asyncio.wait_for(sleeping_behind, BOUND)


@pytest.mark.parametrize(
    ("released", "sleeps_first"),
    [([], True), (["other"], True), (["k"], False), (None, False)],
    ids=["nothing", "another-key", "its-key", "listener-lost"],
)
def test_a_saga_its_opening_queued_sleeps_first_unless_its_key_was_released_since(
    released: list[str] | None, sleeps_first: bool
):
    wakeups = KeyWakeups()
    wakeups.wake(["k"])  # before the opening looked: it saw that release
    mark = wakeups.mark()
    wakeups.queued_at_opening("s-1", mark, ticket=7)
    if released is None:
        wakeups.wake_all()
    else:
        wakeups.wake(released)
    with wakeups.watch("s-1", ["k", "j"]) as watch:
        assert watch.opening_ticket == (7 if sleeps_first else None)
    with wakeups.watch("s-1", ["k", "j"]) as again:
        assert again.opening_ticket is None  # the note is used once


def test_an_opening_noted_before_releases_it_no_longer_remembers_asks_first():
    wakeups = KeyWakeups()
    mark = wakeups.mark()
    wakeups.queued_at_opening("s-1", mark, ticket=3)
    for number in range(RECENT_RELEASES + 1):
        wakeups.wake([f"other-{number}"])
    with wakeups.watch("s-1", ["k"]) as watch:
        assert watch.opening_ticket is None


def test_an_operator_change_before_the_watch_makes_the_saga_ask_first():
    wakeups = KeyWakeups()
    wakeups.queued_at_opening("s-1", wakeups.mark(), ticket=3)
    wakeups.wake_saga("s-1")
    with wakeups.watch("s-1", ["k"]) as watch:
        assert watch.opening_ticket is None


async def test_a_release_after_the_watch_began_ends_the_first_sleep():
    wakeups = KeyWakeups()
    wakeups.queued_at_opening("s-1", wakeups.mark(), ticket=3)
    with wakeups.watch("s-1", ["k"]) as watch:
        assert watch.opening_ticket == 3
        wakeups.wake(["k"])  # before the driver got to sleep
        await asyncio.wait_for(wakeups.sleep(watch, watch.opening_ticket, BOUND), BOUND)
        assert watch.woken


@pytest.mark.parametrize(
    ("listener_heard_before", "listener_lost", "echo_wakes_next"),
    [(True, False, False), (False, False, True), (True, True, True)],
    ids=["echo-skipped", "listener-not-yet-heard", "listener-lost-meanwhile"],
)
async def test_the_echo_of_a_release_here_does_not_wake_the_next_in_line(
    listener_heard_before: bool, listener_lost: bool, echo_wakes_next: bool
):
    wakeups = KeyWakeups()
    if listener_heard_before:
        wakeups.heard_release("elsewhere")  # the listener is known to listen
    with wakeups.watch("s-0", ["k"]) as first, wakeups.watch("s-1", ["k"]) as second:
        first.arm()
        second.arm()
        sleeping_first = asyncio.create_task(wakeups.sleep(first, 1, BOUND))
        sleeping_second = asyncio.create_task(wakeups.sleep(second, 2, BOUND))
        await asleep(wakeups, 2)
        wakeups.wake(["k"])  # released by a commit here
        await asyncio.wait_for(sleeping_first, BOUND)
        first.arm()  # the first in line asks the store
        if listener_lost:
            wakeups.wake_all()  # everyone looks again
            await asyncio.wait_for(sleeping_second, BOUND)
            second.arm()
            sleeping_second = asyncio.create_task(wakeups.sleep(second, 2, BOUND))
            await asleep(wakeups, 1)
        wakeups.heard_release("k")  # the release's own notification comes back
        await asyncio.sleep(0)
        assert second.woken is echo_wakes_next
        wakeups.heard_release("k")  # a later release, elsewhere
        await asyncio.wait_for(sleeping_second, BOUND)
        assert second.woken
