"""`make demo-choreography` runs: the completed, refused and rescued bookings end as the
demo says, the services' files agree with the sagas, and the run's exchange and queues
are gone afterwards."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import aio_pika
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEMO_TIMEOUT_SECONDS = 240.0


async def exists(kind: str, name: str) -> bool:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        try:
            if kind == "exchange":
                await channel.get_exchange(name, ensure=True)
            else:
                await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return False
        return True


def test_the_choreography_demo_tracks_completes_unwinds_and_rescues(tmp_path):
    done = subprocess.run(
        ["make", "--no-print-directory", "demo-choreography", f"DEMO_ARGS=--workdir {tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "every check held" in out
    steps = r"book_flight=(\w+)  book_hotel=(\w+)  rent_car=(\w+)"
    completed = re.findall(rf"saga \S+: COMPLETED  {steps}", out)
    assert completed == [("completed", "completed", "completed")]
    failed = re.findall(rf"saga \S+: FAILED(?: needs_intervention)?  {steps}", out)
    assert failed[0] == ("compensated", "compensated", "failed")  # trip-2
    # trip-3: the flight undone by the rescue, the hotel's part resolved by the operator
    assert failed[-1] == ("compensated", "compensated", "pending")
    assert re.search(r"event car_rental_failed\s+trip-2 ", out)
    assert re.search(r"event flight_cancelled\s+trip-3 ", out)  # the flight obeyed the rescue
    assert "$ saga abort" in out
    assert "operator-olga" in out  # the abort, in trip-3's history
    assert "needs_intervention" in out
    for name in ("flight", "hotel", "car_rental"):
        assert (tmp_path / f"{name}.sqlite3").is_file()
    exchange = re.search(r"exchange (demo-choreography-[0-9a-f]+)", out)
    assert exchange is not None
    assert not asyncio.run(exists("exchange", exchange[1]))
    for queue in ("flight", "hotel", "car_rental", "tracker", "observer"):
        assert not asyncio.run(exists("queue", f"{exchange[1]}.{queue}"))
