"""What the monitoring tests share: the shipped files, PromQL metric names, Prometheus.

`metric_names` reads the metric names out of a PromQL expression without a parser of
its own: strings, label matchers, ranges and grouping clauses are cut out first, and
what is left that is not a function call, a keyword or a number is a metric name.
`PrometheusServer` is the real server (Debian's `prometheus`), on a free port and a
data directory of its own, stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deploy" / "prometheus" / "saga-orchestrator.rules.yml"
RULE_TESTS_FILE = ROOT / "deploy" / "prometheus" / "saga-orchestrator.rules.test.yml"
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "saga-orchestrator.json"

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$instance": ".*", "${instance}": ".*"}
"""The dashboard's variables, as Grafana would fill them, so the expressions parse."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
    | {"group_left", "group_right", "atan2"}
)


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _STRING.sub('""', expression)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", " ", text)
    return {
        name
        for name, call in _IDENTIFIER.findall(text)
        if not call and name.lower() not in _KEYWORDS
    }


def rule_expressions() -> dict[str, str]:
    """Each alert of the shipped rules file, by name, with its expression."""
    document = yaml.safe_load(RULES_FILE.read_text())
    return {rule["alert"]: rule["expr"] for group in document["groups"] for rule in group["rules"]}


def dashboard_expressions() -> list[str]:
    """Every query of the shipped dashboard (panels and variables), variables filled in."""
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("definition", "")
        labels = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
        if labels:
            found.append(labels[1])
    filled = []
    for expression in found:
        for variable, value in GRAFANA_VARIABLES.items():
            expression = expression.replace(variable, value)
        filled.append(expression)
    return filled


def required_tool(name: str) -> str:
    """The path of a Prometheus binary; missing, the test skips, or fails under CI=true."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian package `prometheus`; .ci/run installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


class PrometheusServer:
    """A Prometheus server of the test's own: its config, data directory and port."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.config_file = workdir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.log_file = workdir / "prometheus.log"
        self.address = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        """Start it and wait until /-/ready answers; a port taken meanwhile is tried again."""
        binary = required_tool("prometheus")
        for _ in range(3):
            self.address = f"127.0.0.1:{free_port()}"
            with self.log_file.open("ab") as log:
                self._process = subprocess.Popen(
                    [
                        binary,
                        f"--config.file={self.config_file}",
                        f"--storage.tsdb.path={self.workdir / 'data'}",
                        f"--web.listen-address={self.address}",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
            if self._wait_ready(timeout):
                return self
            self.stop()
            if "address already in use" not in self.log_tail():
                break
        raise AssertionError(f"prometheus did not become ready:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                return False
            url = f"http://{self.address}/-/ready"
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(url, timeout=2) as ready,
            ):
                if ready.status == 200:
                    return True
            time.sleep(0.2)
        return False

    def alerts(self) -> list[dict[str, Any]]:
        answer = get_json(f"http://{self.address}/api/v1/alerts")
        assert answer["status"] == "success", answer
        return list(answer["data"]["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        answer = get_json(f"http://{self.address}/api/v1/targets")
        return list(answer["data"]["activeTargets"])

    def wait_for_alert(
        self, name: str, state: str, timeout: float = 90.0, **labels: str
    ) -> dict[str, Any]:
        """The alert once it is in `state` with `labels`, polled (bounded)."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = self.alerts()
            for alert in seen:
                wanted = {"alertname": name, **labels}
                matches = all(alert["labels"].get(k) == v for k, v in wanted.items())
                if matches and alert["state"] == state:
                    return alert
            time.sleep(0.5)
        raise AssertionError(
            f"{name} {labels} not {state} within {timeout}s; alerts: {seen}; "
            f"targets: {self.targets()}\n{self.log_tail()}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def prometheus_server(workdir: Path, config: dict[str, Any]) -> Iterator[PrometheusServer]:
    """A started Prometheus server, always stopped on leaving."""
    server = PrometheusServer(workdir, config)
    try:
        yield server.start()
    finally:
        server.stop()
