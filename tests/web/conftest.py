"""The console against real processes, seen through headless Chromium.

The example participants come from the end-to-end fixture as they are; one more
payment participant answers slowly, rejects a marked customer id and can never
refund, so sagas run long enough to watch, fail with a participant's own error,
and get stuck for an operator. Each orchestrator (`serve_with_console.py`) runs on
its own SQLite file with the console beside it: one in laptop mode, one with
tokens for an operator and a reader.

Chromium is the distribution's package (/usr/bin/chromium) driven by Playwright;
without it the browser tests skip, except under CI=true, where they fail. A
failing test leaves a screenshot of its page in the test's temporary directory,
named in the failure report.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from orchestrator.web import token_digest
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import MAX_CHARGE_MINOR, TERMINAL, participants  # noqa: F401
from tools.processes import ChildProcess, orchestrator_process, participants_process

CHROMIUM = os.environ.get("SAGA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCHER = Path(__file__).with_name("serve_with_console.py")
DEFINITIONS = "orchestrator.examples,orchestrator.examples.operator_demo"
XSS = '<script>window.__xss = 1</script>"><img src=x onerror="window.__xss = 2">'
"""A payload and a participant error carry this; the page must show it as text."""
PAYMENT_LATENCY_MS = 2500
OPERATOR_TOKEN = "operator-token-7f3a"
READER_TOKEN = "reader-token-91bc"
SCREENSHOTS_ENV = "SAGA_CONSOLE_SCREENSHOTS"
"""A directory (docs/console) to save the documentation's screenshots into."""


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def slow_payment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    """Payment that takes its time, rejects XSS as a customer id, and never refunds."""
    process = participants_process(
        tmp_path_factory.mktemp("slow-payment"),
        ["payment"],
        [
            "--latency-ms", str(PAYMENT_LATENCY_MS),
            "--max-charge-minor", str(MAX_CHARGE_MINOR),
            "--fail-ids", XSS,
            "--compensation-failures", "-1",
        ],
        name="slow-payment",
    )  # fmt: skip
    try:
        yield process.start()
    finally:
        process.stop()


def _console_process(workdir: Path, addresses: dict[str, str], tokens: Path | None) -> ChildProcess:
    if tokens is None:
        # Laptop mode is exactly `saga serve --http-listen`.
        return orchestrator_process(
            workdir,
            f"sqlite:///{workdir / 'saga.sqlite3'}",
            addresses,
            env={"SAGA_DEFINITIONS": DEFINITIONS},
            name="orchestrator-console",
            extra_args=["--http-listen", "127.0.0.1:0"],
        )
    argv = [
        sys.executable,
        str(LAUNCHER),
        "--database",
        f"sqlite:///{workdir / 'saga.sqlite3'}",
        "--definitions",
        DEFINITIONS,
    ]
    for name, address in sorted(addresses.items()):
        argv += ["--participant", f"{name}={address}"]
    if tokens is not None:
        argv += ["--tokens", str(tokens)]
    return ChildProcess("orchestrator-console", argv, workdir)


@pytest.fixture(scope="module")
def addresses(participants: ChildProcess, slow_payment: ChildProcess) -> dict[str, str]:  # noqa: F811
    return {**participants.info["services"], **slow_payment.info["services"]}


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, addresses: dict[str, str]
) -> Iterator[ChildProcess]:
    """An orchestrator with the console in laptop mode (no sign-in)."""
    process = _console_process(tmp_path_factory.mktemp("console"), addresses, None)
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def secured_console(
    tmp_path_factory: pytest.TempPathFactory, addresses: dict[str, str]
) -> Iterator[ChildProcess]:
    """An orchestrator whose console knows an operator (Olga) and a reader (Rudi)."""
    workdir = tmp_path_factory.mktemp("secured-console")
    tokens = workdir / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                token_digest(OPERATOR_TOKEN): {"name": "olga", "roles": ["operator", "reader"]},
                token_digest(READER_TOKEN): {"name": "rudi", "roles": ["reader"]},
            }
        )
    )
    process = _console_process(workdir, addresses, tokens)
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """`open_page(url, **context_options)`: a fresh browser context's page at `url`.

    Script errors on the page fail the test; a failing test saves a screenshot of
    every page it opened.
    """
    contexts: list[Any] = []
    pages: list[Any] = []
    errors: list[str] = []

    def opener(url: str, **options: Any) -> Any:
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        pages.append(page)
        page.goto(url)
        return page

    try:
        yield opener
        assert not errors, f"script errors on the page: {errors}"
    finally:
        report = getattr(request.node, "report_call", None)
        if report is None or report.failed or errors:
            for number, page in enumerate(pages):
                shot = tmp_path / f"failure-{number}.png"
                try:
                    page.screenshot(path=str(shot), full_page=True)
                    print(f"screenshot of the failing page: {shot}")
                except Exception as error:  # a closed page: nothing to show
                    print(f"no screenshot: {error}")
        for context in contexts:
            context.close()


@pytest.fixture
def documentation_shot() -> Iterator[Any]:
    """`documentation_shot(page, name)`: save a screenshot for docs/console when asked to."""
    target = os.environ.get(SCREENSHOTS_ENV, "")

    def shoot(page: Any, name: str, selector: str | None = None) -> None:
        if not target:
            return
        Path(target).mkdir(parents=True, exist_ok=True)
        path = Path(target) / f"{name}.png"
        if selector is None:
            page.screenshot(path=str(path), full_page=True)
        else:
            page.locator(selector).screenshot(path=str(path))

    yield shoot


def stub_of(process: ChildProcess) -> Iterator[pb_grpc.SagaOrchestratorStub]:
    with grpc.insecure_channel(process.address) as channel:
        yield pb_grpc.SagaOrchestratorStub(channel)


@pytest.fixture(scope="module")
def stub(console: ChildProcess) -> Iterator[pb_grpc.SagaOrchestratorStub]:
    yield from stub_of(console)


@pytest.fixture(scope="module")
def secured_stub(secured_console: ChildProcess) -> Iterator[pb_grpc.SagaOrchestratorStub]:
    yield from stub_of(secured_console)


def wait_until(
    stub: pb_grpc.SagaOrchestratorStub, saga_id: str, done: Any, timeout: float = 60.0
) -> pb.Saga:
    """Poll GetSaga until `done(saga)` (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        saga = stub.GetSaga(pb.GetSagaRequest(saga_id=saga_id), timeout=5)
        if done(saga):
            return saga
        if time.monotonic() > deadline:
            raise TimeoutError(f"saga {saga_id} still {pb.SagaStatus.Name(saga.status)}")
        time.sleep(0.1)


def terminal(saga: pb.Saga) -> bool:
    return saga.status in TERMINAL
