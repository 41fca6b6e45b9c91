"""The console against real processes, seen through headless Chromium.

The example participants come from the end-to-end fixture as they are; one more
payment participant answers slowly, rejects a marked customer id and can never
refund, so sagas run long enough to watch, fail with a participant's own error,
and get stuck for an operator. Each orchestrator (`saga serve --http-listen`) runs on
its own SQLite file with the console beside it: one in laptop mode, one with an
`--auth-file` naming an operator, a reader and the application (client role).

Chromium is the distribution's package (/usr/bin/chromium) driven by Playwright;
without it the browser tests skip, except under CI=true, where they fail. A
failing test leaves a screenshot of its page in the test's temporary directory,
named in the failure report.
"""

from __future__ import annotations

import os
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
DEFINITIONS = (
    "orchestrator.examples,orchestrator.examples.operator_demo,orchestrator.examples.create_order,"
    "orchestrator.examples.expensive_trip"
)
XSS = '<script>window.__xss = 1</script>"><img src=x onerror="window.__xss = 2">'
"""A payload and a participant error carry this; the page must show it as text."""
PAYMENT_LATENCY_MS = 2500
OPERATOR_TOKEN = "operator-token-7f3a"
READER_TOKEN = "reader-token-91bc"
APPROVER_TOKEN = "approver-token-3e81"
CLIENT_TOKEN = "client-token-5d20"
"""The application's token: the secured orchestrator's gRPC API wants one too."""
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


def _console_process(
    workdir: Path, addresses: dict[str, str], auth_file: Path | None
) -> ChildProcess:
    """`saga serve --http-listen`: in laptop mode, or with `--auth-file`."""
    extra = ["--http-listen", "127.0.0.1:0"]
    if auth_file is not None:
        extra += ["--auth-file", str(auth_file)]
    return orchestrator_process(
        workdir,
        f"sqlite:///{workdir / 'saga.sqlite3'}",
        addresses,
        env={"SAGA_DEFINITIONS": DEFINITIONS},
        name="orchestrator-console",
        extra_args=extra,
    )


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
    """An orchestrator whose console knows an operator (Olga), a reader (Rudi) and an
    approver (April)."""
    workdir = tmp_path_factory.mktemp("secured-console")
    auth_file = workdir / "callers.toml"
    auth_file.write_text(
        "".join(
            f'[[caller]]\nname = "{name}"\nroles = {roles}\n'
            f'token_sha256 = "{token_digest(token)}"\n\n'
            for name, roles, token in (
                ("olga", '["operator", "reader"]', OPERATOR_TOKEN),
                ("rudi", '["reader"]', READER_TOKEN),
                ("april", '["approver"]', APPROVER_TOKEN),
                ("shop", '["client"]', CLIENT_TOKEN),
            )
        )
    )
    process = _console_process(workdir, addresses, auth_file)
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
    """The application's view: starts and reads sagas with the client role's token."""
    channel = grpc.intercept_channel(
        grpc.insecure_channel(secured_console.address), BearerToken(CLIENT_TOKEN)
    )
    with channel:
        yield pb_grpc.SagaOrchestratorStub(channel)


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)


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
