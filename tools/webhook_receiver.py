"""A small webhook receiver on 127.0.0.1: records each delivery and checks its signature
with the orchestrator's verifier (`orchestrator.events.webhooks.verify`).

Two uses. Tests run `WebhookReceiver` in-process and script its answers per path (500
three times, then 200; a 410; a redirect; a slow answer). `make demo` runs it as a
process (`python -m tools.webhook_receiver --secret-file F --ready-file R`): it prints one
line per delivery (event type, saga id, verified or not) and reads the secret from the
file at every request, so the secret of an endpoint registered after it started works.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from orchestrator.events.webhooks import WebhookVerificationError, verify


@dataclass(frozen=True, slots=True)
class Answer:
    """What the receiver answers one request on a path."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hold: float = 0.0
    """Seconds to hold the request before answering (a slow receiver); `release()` ends
    every hold at once."""


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    """What the receiver answered."""

    @property
    def event(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.body)
        return loaded


class WebhookReceiver:
    """An aiohttp server whose paths answer as scripted (200 once the script is spent)."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Answer]] = {}
        self.received: list[Received] = []
        self._changed = asyncio.Condition()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def script(self, path: str, *answers: Answer) -> str:
        """Answer the next requests on `path` with `answers`; returns the path's URL."""
        self.scripts[path] = list(answers)
        return self.base_url + path

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.base_url = f"http://{bound[0]}:{bound[1]}"
        return self.base_url

    def release(self) -> None:
        self._released.set()

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        script = self.scripts.get(request.path, [])
        answer = script.pop(0) if script else Answer()
        received = Received(request.path, dict(request.headers), body, answer.status)
        async with self._changed:
            self.received.append(received)
            self._changed.notify_all()
        if answer.hold:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(answer.hold):
                    await self._released.wait()
        return web.Response(status=answer.status, headers=answer.headers)

    async def wait_for(
        self, check: Callable[[list[Received]], bool], within: float = 30.0
    ) -> list[Received]:
        """The requests so far, once `check` holds for them (TimeoutError after `within`)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: check(self.received))
            return list(self.received)

    def on(self, path: str) -> list[Received]:
        return [item for item in self.received if item.path == path]


def describe(received: Received, secret: str | None) -> str:
    """One line for the demo: the event, its saga, and whether its signature verifies."""
    try:
        event = received.event
    except ValueError:
        return f"received on {received.path}: a body that is not JSON"
    verified = "no secret"
    if secret:
        try:
            verify(secret, received.headers, received.body, now=time.time())
            verified = "verified"
        except WebhookVerificationError as error:
            verified = f"NOT VERIFIED ({error})"
    return f"received {event.get('type')} saga={event.get('subject')} signature {verified}"


def _more_than(count: int, items: list[Received]) -> bool:
    return len(items) > count


def _read_secret(secret_file: Path | None) -> str | None:
    if secret_file is None or not secret_file.exists():
        return None
    return secret_file.read_text().strip() or None


async def _serve(secret_file: Path | None, ready_file: Path | None) -> None:
    receiver = WebhookReceiver()
    base_url = await receiver.start()
    seen = 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"address": base_url, "pid": os.getpid()}))
        tmp.replace(ready_file)
    print(f"webhook receiver listening on {base_url}", flush=True)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await receiver.wait_for(functools.partial(_more_than, seen), 0.5)
        secret = _read_secret(secret_file)
        for item in receiver.received[seen:]:
            print(describe(item, secret), flush=True)
        seen = len(receiver.received)
    await receiver.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--secret-file", type=Path, help="the endpoint's whsec_ secret")
    parser.add_argument("--ready-file", type=Path, help="where to write the listening address")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.secret_file, args.ready_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
