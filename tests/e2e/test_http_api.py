"""The HTTP/JSON API against real processes: docs/http.md's walkthrough run as written,
the gRPC auth file's tokens and roles over HTTP, and WatchSaga's event stream resumed.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from orchestrator.web import token_digest
from tests.e2e.conftest import participants  # noqa: F401
from tools.certs import make_ca
from tools.processes import ChildProcess, orchestrator_process

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "http.md"
DEFINITIONS = "orchestrator.examples,orchestrator.examples.expensive_trip"
CLIENT_TOKEN = "http-client-token-1"
READER_TOKEN = "http-reader-token-2"
OPERATOR_TOKEN = "http-operator-token-3"


def _serve(workdir: Path, addresses: dict[str, str], *extra: str) -> ChildProcess:
    return orchestrator_process(
        workdir,
        f"sqlite:///{workdir / 'saga.sqlite3'}",
        addresses,
        env={"SAGA_DEFINITIONS": DEFINITIONS},
        extra_args=["--http-listen", "127.0.0.1:0", *extra],
    ).start()


@pytest.fixture
def server(tmp_path: Path, participants: ChildProcess) -> Iterator[ChildProcess]:  # noqa: F811
    process = _serve(tmp_path, participants.info["services"])
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def secured(tmp_path: Path, participants: ChildProcess) -> Iterator[ChildProcess]:  # noqa: F811
    auth_file = tmp_path / "callers.toml"
    auth_file.write_text(
        f'[[caller]]\nname = "shop"\nroles = ["client"]\n'
        f'token_sha256 = "{token_digest(CLIENT_TOKEN)}"\n\n'
        f'[[caller]]\nname = "rudi"\nroles = ["reader"]\n'
        f'token_sha256 = "{token_digest(READER_TOKEN)}"\n\n'
        f'[[caller]]\nname = "olga"\nroles = ["operator"]\n'
        f'token_sha256 = "{token_digest(OPERATOR_TOKEN)}"\n'
    )
    process = _serve(tmp_path, participants.info["services"], "--auth-file", str(auth_file))
    try:
        yield process
    finally:
        process.stop()


def _blocks(kind: str, text: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", text, flags=re.S)


def test_the_walkthrough_runs_as_written(server: ChildProcess, tmp_path: Path):
    walkthrough = GUIDE.read_text().split("## Walkthrough", 1)[1]
    commands = _blocks("sh", walkthrough)[1:]  # the first starts the server, as here
    script = "set -euo pipefail\n" + "\n".join(commands)
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env={"SAGA": server.info["console_url"].rstrip("/"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout
    for expected in _blocks("text", walkthrough):
        for line in expected.splitlines():
            pattern = ".*".join(re.escape(part) for part in line.split("..."))
            assert re.search(f"^{pattern}$", output, flags=re.M), f"{line!r} not in:\n{output}"


def test_tokens_and_roles_are_the_grpc_ones_and_cookies_count_for_nothing(secured: ChildProcess):
    base = secured.info["console_url"].rstrip("/")
    anonymous = requests.get(f"{base}/v1/sagas", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert anonymous.json()["code"] == 16
    cookie_only = requests.get(
        f"{base}/v1/sagas", cookies={"saga_console_session": "x"}, timeout=10
    )
    assert cookie_only.status_code == 401
    reader = {"Authorization": f"Bearer {READER_TOKEN}"}
    assert requests.get(f"{base}/v1/sagas", headers=reader, timeout=10).status_code == 200
    refused = requests.post(f"{base}/v1/sagas", headers=reader, json={}, timeout=10)
    assert refused.status_code == 403
    assert "rudi may not call /saga.v1.SagaOrchestrator/StartSaga" in refused.json()["message"]
    client = {"Authorization": f"Bearer {CLIENT_TOKEN}"}
    started = requests.post(
        f"{base}/v1/sagas",
        headers=client,
        json={"sagaType": "no_such_type", "correlationId": "c-1", "payload": {}},
        timeout=10,
    )
    assert started.status_code in (400, 404)
    assert started.json()["details"][0]["@type"].endswith("google.rpc.ErrorInfo")


def test_an_operator_action_is_recorded_under_the_token_s_caller(secured: ChildProcess):
    base = secured.info["console_url"].rstrip("/")
    payload = {
        "customer_id": "c-5", "traveller_name": "Ada", "flight_number": "LH400",
        "hotel_id": "berlin-central", "nights": 1, "car_location": "BER",
        "car_class": "compact", "car_days": 1,
        "amount": {"currency_code": "EUR", "amount_minor": 1000},
    }  # fmt: skip
    saga_id = requests.post(
        f"{base}/v1/sagas",
        headers={"Authorization": f"Bearer {CLIENT_TOKEN}"},
        json={"sagaType": "expensive_trip", "correlationId": "audit-1", "payload": payload},
        timeout=10,
    ).json()["sagaId"]
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    aborted = requests.post(
        f"{base}/v1/sagas/{saga_id}:abort",
        headers=operator,
        json={"reason": "duplicate booking", "requestedBy": "someone-else"},
        timeout=10,
    )
    assert aborted.status_code == 200, aborted.text
    history = requests.get(
        f"{base}/v1/sagas/{saga_id}/history", headers=operator, timeout=10
    ).json()["transitions"]
    (row,) = [r for r in history if r["event"] == "TRANSITION_EVENT_SAGA_ABORTED"]
    assert row["actor"] == "operator:olga"
    assert row["reason"] == "duplicate booking (requested_by: someone-else)"


def test_the_watch_resumes_after_last_event_id_and_ends_with_the_saga(server: ChildProcess):
    base = server.info["console_url"].rstrip("/")
    payload = {
        "customer_id": "c-9", "traveller_name": "Ada", "flight_number": "LH400",
        "hotel_id": "berlin-central", "nights": 1, "car_location": "BER",
        "car_class": "compact", "car_days": 1,
        "amount": {"currency_code": "EUR", "amount_minor": 1000},
    }  # fmt: skip
    started = requests.post(
        f"{base}/v1/sagas",
        json={"sagaType": "travel_booking", "correlationId": "w-1", "payload": payload},
        timeout=10,
    ).json()
    url = f"{base}/v1/sagas/{started['sagaId']}:watch"
    whole = requests.get(url, timeout=60).text
    ids = [int(seq) for seq in re.findall(r"^id: (\d+)$", whole, flags=re.M)]
    assert len(ids) >= 5 and ids == list(range(1, len(ids) + 1))
    assert whole.rstrip().endswith("event: end\ndata: {}")
    resumed = requests.get(url, headers={"Last-Event-ID": "2"}, timeout=60).text
    assert [int(s) for s in re.findall(r"^id: (\d+)$", resumed, flags=re.M)] == ids[2:]
    first = json.loads(re.findall(r"^data: (.*)$", resumed, flags=re.M)[0])
    assert first["transition"]["seq"] == 3
    missing = requests.get(
        f"{base}/v1/sagas/00000000-0000-4000-8000-000000000000:watch", timeout=10
    )
    assert missing.status_code == 404 and missing.json()["code"] == 5


def _gauge(metrics_address: str, name: str) -> float:
    text = requests.get(f"http://{metrics_address}/metrics", timeout=10).text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, flags=re.M)
    assert match, f"no {name} in the metrics"
    return float(match.group(1))


def _leave_after_first_event(url: str) -> None:
    """Open the event stream, read its first event, and hang up without a goodbye."""
    with requests.get(url, stream=True, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith(b"data:"):
                break
    # the with-block closes the connection mid-stream


def test_a_client_leaving_a_stream_mid_way_is_no_error(
    tmp_path: Path,
    participants: ChildProcess,  # noqa: F811
):
    workdir = tmp_path / "leaving"
    workdir.mkdir()
    server = _serve(workdir, participants.info["services"], "--metrics-listen", "127.0.0.1:0")
    try:
        base = server.info["console_url"].rstrip("/")
        payload = {
            "customer_id": "c-7", "traveller_name": "Ada", "flight_number": "LH400",
            "hotel_id": "berlin-central", "nights": 1, "car_location": "BER",
            "car_class": "compact", "car_days": 1,
            "amount": {"currency_code": "EUR", "amount_minor": 1000},
        }  # fmt: skip
        saga_id = requests.post(
            f"{base}/v1/sagas",
            json={"sagaType": "expensive_trip", "correlationId": "leave-1", "payload": payload},
            timeout=10,
        ).json()["sagaId"]
        _leave_after_first_event(f"{base}/v1/sagas/{saga_id}:watch")
        _leave_after_first_event(f"{base}/api/sagas/{saga_id}/events")
        aborted = requests.post(
            f"{base}/v1/sagas/{saga_id}:abort",
            json={"reason": "the client left", "requestedBy": "test"},
            timeout=10,
        )
        assert aborted.status_code == 200, aborted.text
        # Both streams' handlers have ended once no watch is open on the replica.
        deadline = time.monotonic() + 30
        while _gauge(server.info["metrics_address"], "saga_watch_streams") > 0:
            assert time.monotonic() < deadline, "the streams stayed open after their clients left"
            time.sleep(0.05)
        requests.get(f"{base}/v1/sagas/{saga_id}:watch", timeout=60)  # until it has ended
    finally:
        server.stop()
    log = (workdir / "orchestrator.log").read_text()
    assert "Traceback" not in log and "Error handling request" not in log, log[-3000:]


def test_a_full_replica_answers_429_with_retry_after_and_retry_info(
    tmp_path: Path,
    participants: ChildProcess,  # noqa: F811
):
    server = _serve(tmp_path, participants.info["services"], "--max-watch-streams", "1")
    try:
        base = server.info["console_url"].rstrip("/")
        payload = {
            "customer_id": "c-8", "traveller_name": "Ada", "flight_number": "LH400",
            "hotel_id": "berlin-central", "nights": 1, "car_location": "BER",
            "car_class": "compact", "car_days": 1,
            "amount": {"currency_code": "EUR", "amount_minor": 1000},
        }  # fmt: skip
        start = {"sagaType": "expensive_trip", "correlationId": "full-1", "payload": payload}
        saga_id = requests.post(f"{base}/v1/sagas", json=start, timeout=10).json()["sagaId"]
        watch = f"{base}/v1/sagas/{saga_id}:watch"
        with requests.get(watch, stream=True, timeout=30) as holding:
            assert holding.status_code == 200
            lines = holding.iter_lines()  # kept: a dropped iterator closes the connection
            next(lines)  # the stream is open: it holds the replica's one watch
            for refused in (
                requests.get(watch, timeout=10),
                requests.post(f"{base}/v1/sagas:execute", json={"start": start}, timeout=10),
            ):
                assert refused.status_code == 429, refused.text
                assert int(refused.headers["Retry-After"]) >= 1
                status = refused.json()
                assert status["code"] == 8
                kinds = {detail["@type"].rsplit(".", 1)[-1]: detail for detail in status["details"]}
                assert kinds["ErrorInfo"]["reason"] == "WATCH_STREAMS_EXHAUSTED"
                assert "RetryInfo" in kinds
    finally:
        server.stop()


def test_a_client_certificate_signed_by_the_client_ca_authenticates_over_https(
    tmp_path: Path,
    participants: ChildProcess,  # noqa: F811
):
    ca = make_ca(tmp_path / "pki")
    foreign = make_ca(tmp_path / "foreign", "foreign-ca")
    server_cert = ca.issue("server", tmp_path / "pki")
    desk = ca.issue("ops-desk", tmp_path / "pki")
    impostor = foreign.issue("ops-desk", tmp_path / "foreign")
    auth_file = tmp_path / "callers.toml"
    auth_file.write_text(
        '[[caller]]\nname = "ops-desk"\nroles = ["reader"]\ncertificate = "ops-desk"\n'
    )
    server = _serve(
        tmp_path,
        participants.info["services"],
        "--tls-cert", str(server_cert.cert),
        "--tls-key", str(server_cert.key),
        "--tls-client-ca", str(ca.cert_file),
        "--http-tls-cert", str(server_cert.cert),
        "--http-tls-key", str(server_cert.key),
        "--auth-file", str(auth_file),
    )  # fmt: skip
    try:
        base = server.info["console_url"].rstrip("/")
        assert base.startswith("https://")
        sagas = f"{base}/v1/sagas"
        verify = str(ca.cert_file)
        desk_pair = (str(desk.cert), str(desk.key))
        with_desk = requests.get(sagas, cert=desk_pair, verify=verify, timeout=10)
        assert with_desk.status_code == 200, with_desk.text
        refused = requests.post(
            sagas, json={}, cert=(str(desk.cert), str(desk.key)), verify=verify, timeout=10
        )
        assert refused.status_code == 403
        assert "ops-desk may not call" in refused.json()["message"]
        assert requests.get(sagas, verify=verify, timeout=10).status_code == 401
        with pytest.raises(requests.exceptions.ConnectionError):  # the handshake is refused
            requests.get(
                sagas, cert=(str(impostor.cert), str(impostor.key)), verify=verify, timeout=10
            )
    finally:
        server.stop()


def test_a_body_past_the_bound_or_nested_too_deep_is_refused_and_the_server_serves_on(
    server: ChildProcess,
):
    base = server.info["console_url"].rstrip("/")
    huge = {"sagaType": "travel_booking", "correlationId": "x" * (9 * 1024 * 1024)}
    refused = requests.post(f"{base}/v1/sagas", json=huge, timeout=30)
    assert refused.status_code == 413
    assert refused.json()["code"] == 8 and "bytes" in refused.json()["message"]
    nested = requests.post(
        f"{base}/v1/sagas",
        data="[" * 100_000,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert nested.status_code == 400 and nested.json()["code"] == 3
    assert requests.get(f"{base}/v1/sagaTypes", timeout=10).status_code == 200
