"""The canary monitor in the whole system as `scorestream up` runs it, scraped by a real Prometheus server.

Workers stopped (the injected fault): every answer comes from the default rule; the monitor
writes a default_answers alert to scoring.alerts, `status` shows it, and Prometheus (Debian's
package, on 127.0.0.1, with canary/rules.yml) fires ScorestreamDefaultAnswersBurn.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from canary.alerts import read_alerts
from scorestream.load import run_load
from scorestream.ports import free_port
from scorestream.process import ManagedProcess
from scorestream.stack import CANARY_PORT_OFFSET
from scorestream.topics import TopicRegistry
from tests.integration.test_system import POLICY     # the same small system: one place to change it

WINDOW_S = 3.0
RULES = Path(__file__).resolve().parents[2] / "canary" / "rules.yml"


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    home = tmp_path_factory.mktemp("canary-system")
    policy = home / "policy.yaml"
    policy.write_text(POLICY)
    port, base = free_port(2), random.randrange(20000, 30000, 100)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORESTREAM_")} | {
        "SCORESTREAM_HOME": str(home), "SCORESTREAM_KAFKA_PORT": str(port), "SCORESTREAM_METRICS_PORT_BASE": str(base),
        "SCORESTREAM_CANARY_WINDOW_S": str(WINDOW_S), "SCORESTREAM_CANARY_GRACE_S": "1",
        "SCORESTREAM_CANARY_SHORT_WINDOWS": "1", "SCORESTREAM_CANARY_LONG_WINDOWS": "20",
        "SCORESTREAM_CANARY_REFERENCE_WINDOWS": "3", "SCORESTREAM_CANARY_MIN_COUNT": "50"}

    def cli(*args, timeout=300):
        return subprocess.run([sys.executable, "-m", "scorestream.cli", *args], env=env, capture_output=True,
                              text=True, timeout=timeout)

    # up's warm-up at a low rate: its answers stay in the long burn-rate window (20 x 3 s) and at 200/s would
    # outweigh the 600 default answers the test then provokes; 30 s at most: the test's healthy rounds wait
    # for the system itself
    started = cli("up", "--policy", str(policy), "--warm-up-rate", "20", "--warm-up", "30")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "canary" in started.stdout
    yield home, f"127.0.0.1:{port}", base, cli
    stopped = cli("down")
    assert stopped.returncode == 0 and "canary" in stopped.stdout


@pytest.fixture(scope="module")
def prometheus(system, tmp_path_factory):
    """Debian's prometheus server on 127.0.0.1, scraping the monitor and the rendezvous every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: `make bootstrap` installs Debian's prometheus package (as root)")
    _, _, base, _ = system
    work = tmp_path_factory.mktemp("prometheus")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(RULES)],
              "scrape_configs": [
                  {"job_name": "scorestream-canary",
                   "static_configs": [{"targets": [f"127.0.0.1:{base + CANARY_PORT_OFFSET}"]}]},
                  {"job_name": "scorestream-rendezvous", "static_configs": [{"targets": [f"127.0.0.1:{base}"]}]}]}
    (work / "prometheus.yml").write_text(json.dumps(config))       # JSON is YAML
    port = free_port()
    log = open(work / "prometheus.log", "w")
    proc = subprocess.Popen([binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=1)
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (work / "prometheus.log").read_text()
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(30)


def api(url: str, path: str) -> dict:
    return json.loads(urllib.request.urlopen(f"{url}/api/v1/{path}", timeout=5).read())["data"]


def firing(url: str, name: str) -> list[dict]:
    return [a for a in api(url, "alerts")["alerts"] if a["labels"]["alertname"] == name and a["state"] == "firing"]


def test_stopped_workers_raise_the_default_answers_alert_in_the_monitor_and_in_prometheus(system, prometheus):
    home, bootstrap, base, cli = system
    registry = TopicRegistry.load(prefix="")
    requests, results, alerts = registry.name("requests"), registry.name("results"), registry.name("alerts")
    # A young system on a busy host answers late at first (its JIT, docs/benchmarks.md), and the start's default
    # answers burn the SLO too: healthy traffic until the preferred model answers most and the burn has passed.
    for round_ in range(10):
        healthy = run_load(requests, results, 50, 10, 400, bootstrap, seed=1 + round_)
        preferred = healthy.by_rule.get("preferred", 0) > healthy.answered / 2
        if preferred and not firing(prometheus, "ScorestreamDefaultAnswersBurn"):
            break
    assert preferred, healthy.by_rule
    targets = api(prometheus, "targets")["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in targets}["scorestream-canary"] == "up"
    assert firing(prometheus, "ScorestreamDefaultAnswersBurn") == []
    assert not [a for a in read_alerts(alerts, bootstrap) if a.alert == "default_answers" and a.state == "firing"
                and a.ts > time.time() * 1000 - 2 * WINDOW_S * 1000]

    for ref in ("fraud_xgb@3", "fraud_xgb@2", "fraud_lr@1"):
        ManagedProcess(f"score.{ref}", home).stop()
    stopped_at = time.time() * 1000
    faulty = run_load(requests, results, 50, 12, 400, bootstrap, seed=2)
    assert faulty.by_rule == {"default": faulty.answered}

    raised = [a for a in read_alerts(alerts, bootstrap) if a.alert == "default_answers" and a.ts >= stopped_at]
    assert raised and raised[0].state == "firing" and raised[0].model == "*", raised
    delay = int((raised[0].first_seen - (stopped_at - stopped_at % (WINDOW_S * 1000))) // (WINDOW_S * 1000)) + 1
    print(f"workers stopped: default_answers fired in window {delay} ({WINDOW_S:g} s windows), "
          f"burn {raised[0].value} >= {raised[0].threshold}")
    assert delay <= 3

    deadline = time.monotonic() + 20
    while not (fired := firing(prometheus, "ScorestreamDefaultAnswersBurn")):
        assert time.monotonic() < deadline, api(prometheus, "alerts")
        time.sleep(0.5)
    print(f"prometheus: ScorestreamDefaultAnswersBurn firing {time.time() - stopped_at / 1000:.1f} s after the stop")
    assert fired[0]["labels"]["severity"] == "page"

    status = cli("status")
    assert status.returncode == 0, status.stderr
    assert "canary" in status.stdout and "default_answers" in status.stdout, status.stdout
    printed = cli("alerts", "--firing")
    assert '"alert":"default_answers"' in printed.stdout, printed.stdout + printed.stderr
