"""`make demo-events` runs: every saga's events are consumed from RabbitMQ, the
compensating booking's included, and the demo cleans up after itself."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from tools import demo_events

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def exchange_exists(name: str) -> bool:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.get_exchange(name, ensure=True)
        except aio_pika.exceptions.ChannelClosed:
            return False
        return True


def test_the_events_demo_prints_each_sagas_events_and_deletes_its_exchange(
    tmp_path, capsys, monkeypatch
):
    exchanges: list[str] = []
    real_consume = demo_events.consume

    async def recording(url: str, exchange: str, *args: object) -> bool:
        exchanges.append(exchange)
        return await real_consume(url, exchange, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(demo_events, "consume", recording)
    assert demo_events.main(["--workdir", str(tmp_path / "demo"), "--bookings", "2"]) == 0
    out = capsys.readouterr().out
    assert "every saga's final event consumed" in out
    assert out.count("saga.started") == 2
    assert "saga.compensating" in out and "saga.failed" in out and "saga.completed" in out
    assert not asyncio.run(exchange_exists(exchanges[0]))
