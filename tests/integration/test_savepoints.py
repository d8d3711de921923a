"""Savepoints and crash recovery of the Flink jobs, on the whole embedded system (`scorestream up`):
status through Flink's REST API, a savepoint taken without stopping, a stop with a savepoint and a restart
from it, and a SIGKILL of the rendezvous under load: nothing lost, nothing answered twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import orjson
import pytest

from savepoints.registry import JobHome
from scorestream import kafka
from scorestream.load import run_load, warm_up
from scorestream.process import ManagedProcess
from scorestream.topics import TopicRegistry
from tests.conftest import free_port_pair

POLICY = """\
version: 1
sla_ms: 400
canary: fraud_lr@1
arms:
  - model: fraud_xgb@3
fallback:
  - after_ms: 150
    use: [fraud_xgb@2]
  - after_ms: 250
    use: [fraud_lr@1]
default: {score: 0.0}
"""


class System:
    def __init__(self, home, bootstrap, env):
        self.home, self.bootstrap, self.env = home, bootstrap, env
        self.registry = TopicRegistry.load(prefix="")

    def cli(self, *args, timeout=300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "scorestream.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def load(self, rate: float, seconds: float, drain_s: float = 10.0):
        return run_load(self.registry.name("requests"), self.registry.name("results"), rate, seconds, 400,
                        self.bootstrap, seed=random.randrange(10**6), drain_s=drain_s)

    def answers_per_request(self) -> Counter:
        """How many results each request id has on the results topic, over everything this module sent."""
        consumer = kafka.consumer(f"check-{uuid.uuid4().hex[:6]}", self.bootstrap)
        consumer.subscribe([self.registry.name("results")])
        counts: Counter = Counter()
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 3.0:
            batch = consumer.consume(5000, timeout=0.5)
            if batch:
                idle_since = time.monotonic()
            for msg in batch:
                if not msg.error():
                    counts[orjson.loads(msg.value())["request_id"]] += 1
        consumer.close()
        return counts


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    home = tmp_path_factory.mktemp("savepoints")
    policy = home / "policy.yaml"
    policy.write_text(POLICY)
    port = free_port_pair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORESTREAM_")} | {
        "SCORESTREAM_HOME": str(home), "SCORESTREAM_KAFKA_PORT": str(port),
        "SCORESTREAM_METRICS_PORT_BASE": str(random.randrange(20000, 30000, 10)), "COLUMNS": "300"}
    s = System(home, f"127.0.0.1:{port}", env)
    started = s.cli("up", "--policy", str(policy))
    assert started.returncode == 0, started.stdout + started.stderr
    s.policy = policy
    assert warm_up(s.registry.name("requests"), s.registry.name("results"), 100, 400, s.bootstrap), \
        "answers never came steadily within the SLA"
    yield s
    stopped = s.cli("down")
    assert stopped.returncode == 0 and "kafka" in stopped.stdout


def test_status_savepoint_stop_and_restore(system):
    status = system.cli("status")
    assert status.returncode == 0, status.stderr
    deployment = JobHome(system.home, "rendezvous").current()
    assert deployment.flink_job_id in status.stdout and "RUNNING" in status.stdout

    taken = system.cli("savepoint", "rendezvous")
    assert taken.returncode == 0, taken.stderr
    listed = system.cli("savepoints", "rendezvous")
    assert "savepoint" in listed.stdout and str(JobHome(system.home, "rendezvous").dir) in listed.stdout

    stopped = system.cli("savepoint", "rendezvous", "--stop")
    assert stopped.returncode == 0 and "the job is stopped" in stopped.stdout, stopped.stderr
    job = ManagedProcess("flink.rendezvous", system.home)
    deadline = time.monotonic() + 30
    while job.pid() is not None:
        assert time.monotonic() < deadline, "the job's process did not end after the stop"
        time.sleep(0.2)
    savepoint = JobHome(system.home, "rendezvous").restore_points()[-1]
    assert savepoint.kind == "savepoint"

    again = system.cli("up", "--policy", str(system.policy))
    assert again.returncode == 0 and "flink.rendezvous" in again.stdout, again.stderr
    assert f"restoring from the savepoint {savepoint.path}" in job.log_tail(400)
    restored = JobHome(system.home, "rendezvous").current()
    assert restored.restored_from == str(savepoint.path) and restored.deployment != deployment.deployment
    report = system.load(50, 2)
    assert (report.answered, report.duplicates) == (report.published, 0)
    assert max(system.answers_per_request().values()) == 1


def test_sigkill_under_load_loses_nothing_and_doubles_nothing(system):
    job = ManagedProcess("flink.rendezvous", system.home)
    before = JobHome(system.home, "rendezvous").current()
    timings = {}

    def crash_and_recover():
        time.sleep(8)
        os.killpg(job.pid(), signal.SIGKILL)
        killed = time.monotonic()
        recovered = system.cli("up", "--policy", str(system.policy))
        timings["up_s"] = time.monotonic() - killed
        timings["up"] = recovered

    crasher = threading.Thread(target=crash_and_recover)
    crasher.start()
    report = system.load(300, 20, drain_s=90)
    crasher.join()
    assert timings["up"].returncode == 0, timings["up"].stderr
    after = JobHome(system.home, "rendezvous").current()
    assert after.restored_from and "checkpoints" in after.restored_from
    counts = system.answers_per_request()
    doubled = [rid for rid, n in counts.items() if n > 1]
    print(f"\nSIGKILL under 300/s: up after the kill took {timings['up_s']:.1f}s; published {report.published}, "
          f"answered {report.answered}, doubled {len(doubled)}; p50 {report.percentile(50):.0f} ms, "
          f"max {max(report.latencies_ms):.0f} ms; {job.log_tail(400).count('will not be answered again')} "
          f"restore(s)\n" + "\n".join(l for l in job.log_tail(400).splitlines() if "answered since" in l))
    assert report.answered == report.published, f"{report.published - report.answered} requests lost"
    assert not doubled and report.duplicates == 0
    assert after.deployment != before.deployment
