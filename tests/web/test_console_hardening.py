"""The console and the gRPC listener against hostile clients, with real `saga serve`
processes: over-long headers that would quote a token into the log, a DNS-rebinding
Host, silent and slow connections, and the sign-in session's cookie.

No saga runs here, so the participants' addresses lead nowhere (nothing dials them).
"""

from __future__ import annotations

import http.cookies
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from orchestrator.web import token_digest
from orchestrator.web.sessions import SESSION_COOKIE
from tools.certs import make_ca, new_token
from tools.processes import PARTICIPANT_SERVICES, ChildProcess, orchestrator_process

pytestmark = [pytest.mark.e2e]

NOWHERE = dict.fromkeys(PARTICIPANT_SERVICES, "127.0.0.1:9")
OPERATOR_TOKEN = new_token()
READER_TOKEN = new_token()
EOF_TIMEOUT = 60.0
"""Generous: each listener here closes a silent connection after 1 s; without a bound,
aiohttp waits an hour and gRPC two minutes."""


def auth_file(path: Path, callers: dict[str, tuple[str, str]]) -> Path:
    path.write_text(
        "".join(
            f'[[caller]]\nname = "{name}"\nroles = {json.dumps([role])}\n'
            f'token_sha256 = "{token_digest(token)}"\n\n'
            for name, (role, token) in callers.items()
        )
    )
    return path


CALLERS = {"olga": ("operator", OPERATOR_TOKEN), "rudi": ("reader", READER_TOKEN)}


def serve(workdir: Path, *args: str) -> ChildProcess:
    """A started `saga serve --http-listen 127.0.0.1:0` whose listeners give up on a
    connection after 1 s; the caller stops it."""
    process = orchestrator_process(
        workdir,
        f"sqlite:///{workdir / 'saga.sqlite3'}",
        NOWHERE,
        name="orchestrator",
        extra_args=["--http-listen", "127.0.0.1:0", "--handshake-timeout", "1", *args],
    )
    return process.start()


@pytest.fixture(scope="module")
def laptop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    process = serve(tmp_path_factory.mktemp("laptop"), "--http-allowed-host", "saga.internal")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    workdir = tmp_path_factory.mktemp("secured")
    process = serve(workdir, "--auth-file", str(auth_file(workdir / "callers.toml", CALLERS)))
    try:
        yield process
    finally:
        process.stop()


def call(
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, Any], Any]:
    """(status, JSON answer, headers) of one request; errors are answers too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(base: str, token: str, **options: Any) -> http.cookies.Morsel[str]:
    """POST /api/session with the token; the session cookie the answer sets."""
    extra = options.pop("headers", {})
    status, _, headers = call(f"{base}api/session", method="POST", body={}, **options)
    assert status == 401, "no sign-in without a token"
    status, answer, headers = call(
        f"{base}api/session",
        method="POST",
        body={},
        headers={**bearer(token), **extra},
        **options,
    )
    assert status == 200, answer
    jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    for line in headers.get_all("Set-Cookie"):
        jar.load(line)
    return jar[SESSION_COOKIE]


def with_cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={value}"}


def host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"tcp://{url}")
    assert parsed.hostname is not None and parsed.port is not None
    return parsed.hostname, parsed.port


def wait_for_log(process: ChildProcess, *texts: str, count: int = 1, timeout: float = 30) -> str:
    """The process's log once it holds `count` occurrences of the texts (together)."""
    deadline = time.monotonic() + timeout
    text = " or ".join(texts)
    while True:
        log = process.log_file.read_text(errors="replace")
        if sum(log.count(one) for one in texts) >= count:
            return log
        assert time.monotonic() < deadline, f"{text!r} not logged {count}x:\n{log[-3000:]}"
        time.sleep(0.05)


def test_an_over_long_cookie_or_authorization_header_keeps_its_token_out_of_the_log(
    secured: ChildProcess,
):
    host, port = host_port(secured.info["console_url"])
    padding = "p" * (9 * 1024)
    lines = (
        f"Cookie: {SESSION_COOKIE}={OPERATOR_TOKEN}; other={padding}",
        f"Authorization: Bearer {OPERATOR_TOKEN}{padding}",
    )
    for line in lines:
        with socket.create_connection((host, port), timeout=10) as connection:
            connection.sendall(
                f"GET /api/sagas HTTP/1.1\r\nHost: 127.0.0.1\r\n{line}\r\n\r\n".encode()
            )
            assert connection.recv(100).startswith(b"HTTP/1.0 400")
    # aiohttp's own report of the refusal, or the project's token-free one.
    reports = ("Error handling request", "console refused a malformed HTTP request")
    log = wait_for_log(secured, *reports, count=len(lines))
    assert OPERATOR_TOKEN[:16] not in log
    assert "console refused a malformed HTTP request from 127.0.0.1: LineTooLong" in log


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost", 200),
        ("127.0.0.1", 200),
        ("[::1]", 200),
        ("saga.internal", 200),
        ("evil.example", 421),
        ("127.0.0.1.evil.example", 421),
        ("", 421),
    ],
)
def test_laptop_mode_answers_only_loopback_and_configured_host_names(
    laptop: ChildProcess, host: str, status: int
):
    _, port = host_port(laptop.info["console_url"])
    base = laptop.info["console_url"]
    header = {"Host": f"{host}:{port}"} if host else {"Host": ""}
    answer = call(f"{base}api/sagas", headers=header)
    assert answer[0] == status
    if status == 421:
        assert answer[1]["error"]["reason"] == "HOST_NOT_ALLOWED"
        assert "--http-allowed-host" in answer[1]["error"]["message"]
        # An action from a rebound page is refused before it reaches the servicer.
        action = call(
            f"{base}api/sagas/00000000-0000-4000-8000-000000000000/abort",
            method="POST",
            headers=header,
            body={"reason": "rebound", "requested_by": "attacker"},
        )
        assert action[0] == 421


def test_with_an_auth_file_any_host_reaches_the_sign_in(secured: ChildProcess):
    _, port = host_port(secured.info["console_url"])
    status, answer, _ = call(
        f"{secured.info['console_url']}api/sagas", headers={"Host": f"saga.example:{port}"}
    )
    assert (status, answer["error"]["code"]) == (401, "UNAUTHENTICATED")


def test_the_console_refuses_to_listen_beyond_loopback_without_an_auth_file(tmp_path: Path):
    process = orchestrator_process(
        tmp_path, f"sqlite:///{tmp_path / 'saga.sqlite3'}", NOWHERE, extra_args=[]
    )
    argv = [*process.argv, "--http-listen", "0.0.0.0:0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "without an auth file" in done.stderr and "--http-allow-no-auth" in done.stderr
    assert "listening" not in done.stdout

    process.argv = [*argv, "--http-allow-no-auth"]
    try:
        process.start()
    finally:
        process.stop()
    assert "WITHOUT AUTHENTICATION" in process.log_tail(400)


def _wait_for_eof(connection: socket.socket, keep_talking: bytes = b"") -> None:
    """Read until the server closes; with `keep_talking`, send it every 0.2 s meanwhile
    (a slow client that never finishes its headers)."""
    deadline = time.monotonic() + EOF_TIMEOUT
    connection.settimeout(0.2 if keep_talking else EOF_TIMEOUT)
    while time.monotonic() < deadline:
        try:
            if not connection.recv(4096):
                return
        except TimeoutError:
            try:
                connection.sendall(keep_talking)
            except (BrokenPipeError, ConnectionResetError):
                return
        except ConnectionResetError:
            return
    raise AssertionError(f"the server kept the connection open {EOF_TIMEOUT:g} s")


@pytest.mark.parametrize("listener", ["console", "grpc"])
def test_silent_and_slow_connections_are_closed(laptop: ChildProcess, listener: str):
    address = laptop.info["console_url"] if listener == "console" else laptop.address
    silent = [socket.create_connection(host_port(address), timeout=10) for _ in range(5)]
    slow = socket.create_connection(host_port(address), timeout=10)
    try:
        if listener == "console":  # headers that never end
            slow.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
            _wait_for_eof(slow, keep_talking=b"X-Slow: 1\r\n")
        else:  # half the HTTP/2 preface, then nothing
            slow.sendall(b"PRI * HTTP/2.0\r\n")
            _wait_for_eof(slow)
        for connection in silent:
            _wait_for_eof(connection)
    finally:
        for connection in [*silent, slow]:
            connection.close()


def test_the_session_cookie_names_a_server_side_session_never_the_token(secured: ChildProcess):
    base = secured.info["console_url"]
    cookie = sign_in(base, OPERATOR_TOKEN)
    assert cookie.value != OPERATOR_TOKEN and OPERATOR_TOKEN not in cookie.OutputString()
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"], "plain HTTP: a Secure cookie would never come back"
    assert 0 < int(cookie["max-age"]) <= 24 * 3600
    status, me, _ = call(f"{base}api/whoami", headers=with_cookie(cookie.value))
    assert (status, me["name"]) == (200, "olga")
    behind_tls = sign_in(base, OPERATOR_TOKEN, headers={"X-Forwarded-Proto": "https"})
    assert behind_tls["secure"]
    # A session cannot open another (which would outlive its lifetime): that takes the
    # token, and signing in again ends the session the browser held.
    renew = call(f"{base}api/session", method="POST", body={}, headers=with_cookie(cookie.value))
    assert renew[0] == 401
    again = sign_in(base, OPERATOR_TOKEN, headers=with_cookie(behind_tls.value))
    assert call(f"{base}api/whoami", headers=with_cookie(behind_tls.value))[0] == 401

    # The raw token in a cookie (what earlier versions set) is no credential.
    legacy = {"Cookie": f"saga_console_token={OPERATOR_TOKEN}"}
    assert call(f"{base}api/whoami", headers=legacy)[0] == 401

    status, _, headers = call(
        f"{base}api/session", method="DELETE", headers=with_cookie(cookie.value)
    )
    assert status == 200 and f"{SESSION_COOKIE}=" in headers["Set-Cookie"]
    assert call(f"{base}api/whoami", headers=with_cookie(cookie.value))[0] == 401, (
        "signed out on the server: replaying the cookie is refused"
    )
    assert call(f"{base}api/whoami", headers=with_cookie(again.value))[0] == 200


def test_removing_a_token_from_the_auth_file_ends_its_sessions(tmp_path: Path):
    callers = auth_file(tmp_path / "callers.toml", CALLERS)
    process = serve(tmp_path, "--auth-file", str(callers))
    try:
        base = process.info["console_url"]
        olga, rudi = sign_in(base, OPERATOR_TOKEN), sign_in(base, READER_TOKEN)
        assert call(f"{base}api/whoami", headers=with_cookie(rudi.value))[0] == 200
        auth_file(callers, {"olga": CALLERS["olga"]})
        process.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for_log(process, "reloaded")
        assert call(f"{base}api/whoami", headers=with_cookie(rudi.value))[0] == 401
        assert call(f"{base}api/whoami", headers=with_cookie(olga.value))[0] == 200
    finally:
        process.stop()


def test_over_tls_the_cookie_is_secure_and_the_session_ends_at_its_lifetime(tmp_path: Path):
    ca = make_ca(tmp_path / "pki")
    server = ca.issue("console.saga.test", tmp_path / "pki")
    process = serve(
        tmp_path,
        "--auth-file", str(auth_file(tmp_path / "callers.toml", CALLERS)),
        "--http-tls-cert", str(server.cert),
        "--http-tls-key", str(server.key),
        "--console-session-lifetime", "3s",
    )  # fmt: skip
    try:
        base = process.info["console_url"]
        assert base.startswith("https://")
        tls = ssl.create_default_context(cafile=str(ca.cert_file))
        cookie = sign_in(base, OPERATOR_TOKEN, context=tls)
        assert cookie["secure"] and cookie["httponly"] and int(cookie["max-age"]) == 3
        deadline = time.monotonic() + 60
        while call(f"{base}api/whoami", headers=with_cookie(cookie.value), context=tls)[0] == 200:
            assert time.monotonic() < deadline, "the session outlived its lifetime"
            time.sleep(0.2)
        status, _, _ = call(f"{base}api/whoami", headers=with_cookie(cookie.value), context=tls)
        assert status == 401
        assert call(f"{base}api/whoami", headers=bearer(OPERATOR_TOKEN), context=tls)[0] == 200
    finally:
        process.stop()


def test_an_https_console_needs_both_its_certificate_and_key(tmp_path: Path):
    argv = [sys.executable, "-m", "orchestrator", "serve", "--http-listen", "127.0.0.1:0"]
    done = subprocess.run(
        [*argv, "--http-tls-cert", str(tmp_path / "console.crt")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "--http-tls-key" in done.stderr
    missing = [
        "--http-tls-cert",
        str(tmp_path / "no.crt"),
        "--http-tls-key",
        str(tmp_path / "no.key"),
    ]
    done = subprocess.run(
        [*argv, *missing], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert done.returncode == 2 and "cannot load the console's TLS certificate" in done.stderr
    assert "listening" not in done.stdout
