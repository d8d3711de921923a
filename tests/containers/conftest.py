"""The compose system on a real Docker engine, once per session (`make test-containers` builds the images).

Its own compose project, broker port and network, so it runs beside anything else; `down -v` at the end.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from scorestream import kafka
from scorestream.containers import engine
from scorestream.load import run_load
from scorestream.ports import free_port

ROOT = Path(__file__).parents[2]
COMPOSE_FILE = ROOT / "compose" / "compose.yaml"
FLINK_CLUSTER_FILE = ROOT / "compose" / "flink-cluster.yaml"
IMAGES = ("scorestream-worker", "scorestream-jobs", "scorestream-kafka")
FIRST_ANSWER_TIMEOUT_S = 300
WORKER_MODELS = ("fraud_lr@1", "fraud_xgb@2", "fraud_xgb@3", "fraud_xgb@4")     # compose/compose.yaml's workers


def compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")


class ComposeSystem:
    def __init__(self, project: str, port: int, files: tuple[Path, ...] = (COMPOSE_FILE,)):
        self.project, self.bootstrap = project, f"127.0.0.1:{port}"
        flink_port = free_port(2)
        self.flink_url = f"http://127.0.0.1:{flink_port}"       # with flink-cluster.yaml: the JobManager's REST
        self.env = os.environ | {"SCORESTREAM_KAFKA_PORT": str(port),
                                 "SCORESTREAM_METRICS_PORT_BASE": str(random.randrange(20000, 30000, 10)),
                                 "SCORESTREAM_FLINK_PORT": str(flink_port),
                                 "SCORESTREAM_FLINK_METRICS_PORT": str(flink_port + 1),
                                 "SCORESTREAM_BOOTSTRAP_SERVERS": self.bootstrap,
                                 "SCORESTREAM_DEPLOY_NETWORK": f"{project}_default"}
        self.command = [*compose_command(), *(a for f in files for a in ("-f", str(f))), "-p", project]

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.command, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"compose {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def containers(self, service: str):
        return engine().containers.list(filters={"label": [f"com.docker.compose.project={self.project}",
                                                           f"com.docker.compose.service={service}"]})

    def load(self, count: int, rate: float = 100.0, drain_s: float = 20.0):
        return run_load("scoring.requests", "scoring.results", rate, count / rate, 100, self.bootstrap,
                        seed=random.randrange(10**6), drain_s=drain_s)

    def wait_first_answer(self) -> float:
        began = time.monotonic()
        while time.monotonic() - began < FIRST_ANSWER_TIMEOUT_S:
            try:
                if self.load(10, rate=20, drain_s=3).answered:
                    return time.monotonic() - began
            except Exception:           # the broker's topics are not there yet
                time.sleep(2)
        pytest.fail(f"no answer within {FIRST_ANSWER_TIMEOUT_S}s; logs:\n{self.compose('logs', '--tail', '30').stdout}")

    def warm(self, timeout_s: float = 300.0) -> None:
        """Every worker has joined: each model's group holds every partition of scoring.features. Asked of the
        broker, not judged by which rule answers: on a starved host the preferred model's answers come after
        the fallbacks' deadlines (2026-11-27: in none of 30 rounds did it give most answers, its workers
        assigned and scoring)."""
        admin = kafka.admin(self.bootstrap)
        partitions = len(kafka.partitions(admin, "scoring.features"))
        deadline, waiting = time.monotonic() + timeout_s, {}
        while time.monotonic() < deadline:
            groups = [f"scorestream.score.{ref}" for ref in WORKER_MODELS]
            described = {g: f.result() for g, f in admin.describe_consumer_groups(groups).items()}
            waiting = {g: sum(len(m.assignment.topic_partitions) for m in d.members)
                       for g, d in described.items()}
            if all(n == partitions for n in waiting.values()):
                break
            time.sleep(2)
        else:
            pytest.fail(f"not every worker joined within {timeout_s:.0f}s: partitions held by group {waiting}")
        # the young system's JIT: rounds of load until the preferred model answers most, or 30 of them, whose CPU
        # the later tests' loads would otherwise pay
        for _ in range(30):
            if self.load(50, rate=50, drain_s=5).by_rule.get("preferred", 0) > 25:
                return


@pytest.fixture(scope="session")
def compose_system():
    client = engine()
    if client is None:
        pytest.fail("no Docker engine answers (DOCKER_HOST or /var/run/docker.sock): run `make test-containers`")
    missing = [i for i in IMAGES if not client.images.list(name=i)]
    if missing:
        pytest.fail(f"images missing: {', '.join(missing)}: run `make images`")
    yield from _running(ComposeSystem(f"scorestream-test-{uuid.uuid4().hex[:6]}", free_port(2)))


@pytest.fixture(scope="module")
def flink_cluster_compose_system(compose_system):
    """The compose system with its Flink jobs on a JobManager and TaskManager of their own
    (compose/flink-cluster.yaml). The session's other system is paused meanwhile (frozen: no CPU)."""
    compose_system.compose("pause")
    try:
        yield from _running(ComposeSystem(f"scorestream-flink-{uuid.uuid4().hex[:6]}", free_port(2),
                                          (COMPOSE_FILE, FLINK_CLUSTER_FILE)))
    finally:
        compose_system.compose("unpause")


def _running(system: ComposeSystem):
    began = time.monotonic()
    system.compose("up", "-d")
    try:
        first = system.wait_first_answer()
        print(f"\ncompose up to the first answer: {time.monotonic() - began:.1f}s "
              f"(up returned after {time.monotonic() - began - first:.1f}s)")
        yield system
    finally:
        system.compose("down", "-v", "--remove-orphans", "-t", "45")
