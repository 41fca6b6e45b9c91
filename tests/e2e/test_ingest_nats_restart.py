"""The tracker's JetStream consumer across a restart of a private nats-server (the
machine's server serves other tests): fetching resumes once the server is back on the
same port and store, and every event published before and after reaches the ingestor."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from orchestrator.events.ingest.jetstream import NatsIngest, NatsIngestSettings
from tests.support.recording_ingestor import RecordingIngestor

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class PrivateNats:
    """One nats-server with JetStream on a free loopback port, its store in `root`."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.root = root
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "server.log").open("ab"),
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateNats]:
    if shutil.which("nats-server") is None and not Path("/usr/sbin/nats-server").exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("nats-server is required under CI=true")
        pytest.skip("nats-server is not installed")
    node = PrivateNats(tmp_path)
    node.start()
    try:
        yield node
    finally:
        node.stop()


async def connected(url: str) -> nats.NATS:
    """A client once the server answers (bounded)."""
    for attempt in range(100):
        try:
            return await nats.connect(url, allow_reconnect=False, connect_timeout=2)
        except Exception:
            if attempt == 99:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


async def publish(url: str, subject: str, ids: list[str]) -> None:
    nc = await connected(url)
    try:
        js = nc.jetstream()
        for event_id in ids:
            body = {"specversion": "1.0", "id": event_id, "source": "/car", "type": "t"}
            await js.publish(
                subject,
                json.dumps(body).encode(),
                headers={"Content-Type": "application/cloudevents+json"},
            )
    finally:
        await nc.close()


@pytest.mark.timeout(180)
async def test_fetching_resumes_after_a_server_restart(server):
    await (await connected(server.url)).close()  # the server answers: start consuming
    settings = NatsIngestSettings(
        servers=server.url,
        stream="RESTART",
        subjects=("restart.>",),
        fetch_wait=0.2,
        retry_delay=0.1,
    )
    ingestor = RecordingIngestor()
    consumer = NatsIngest(settings, ingestor)
    await consumer.start()
    try:
        before = [f"before-{n}" for n in range(10)]
        await publish(server.url, "restart.a", before)
        await ingestor.wait_for(lambda i: set(before) <= i.recorded_ids)

        await asyncio.to_thread(server.stop)
        server.start()

        after = [f"after-{n}" for n in range(10)]
        await publish(server.url, "restart.a", after)
        await ingestor.wait_for(lambda i: set(before + after) <= i.recorded_ids, timeout=90)
    finally:
        await consumer.stop()
