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
from scorestream.load import run_load
from scorestream.process import ManagedProcess
from scorestream.topics import TopicRegistry
from scorestream.ports import free_port
from tests.capacity import require_capacity, warm_up_at
from tests.integration.test_system import POLICY     # the same small system: one place to change it

pytestmark = pytest.mark.slow      # minutes of load and new JVMs: `make test-slow`, which CI runs after `make test`


class System:
    def __init__(self, home, bootstrap, env):
        self.home, self.bootstrap, self.env = home, bootstrap, env
        self.registry = TopicRegistry.load(prefix="")
        self.policy = home / "policy.yaml"

    @classmethod
    def in_home(cls, home) -> "System":
        """A system of its own in `home`: the small system's policy, free ports, no SCORESTREAM_* of the caller."""
        port = free_port(2)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCORESTREAM_")} | {
            "SCORESTREAM_HOME": str(home), "SCORESTREAM_KAFKA_PORT": str(port),
            "SCORESTREAM_METRICS_PORT_BASE": str(random.randrange(20000, 30000, 10)), "COLUMNS": "300"}
        s = cls(home, f"127.0.0.1:{port}", env)
        s.policy.write_text(POLICY)
        return s

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
    s = System.in_home(tmp_path_factory.mktemp("savepoints"))
    started = s.cli("up", "--policy", str(s.policy))
    assert started.returncode == 0, started.stdout + started.stderr
    # `up` returned warmed up (scorestream/warmup.py)
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
        recovered = system.cli("up", "--policy", str(system.policy), "--warm-up", "0")   # the load warms it
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


def code_copy(tmp_path, *changes: tuple[str, str, str]):
    """A copy of the code as an operator would have it on disk for an upgrade, with changes (file, old, new)."""
    import shutil
    from scorestream.settings import PROJECT_ROOT
    root = tmp_path / "code"
    for part in ("scorestream", "rendezvous", "extractors", "models", "decoy", "savepoints"):
        shutil.copytree(PROJECT_ROOT / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "topics.yaml", root / "topics.yaml")
    (root / ".scorestream").mkdir()
    (root / ".scorestream" / "jars").symlink_to(PROJECT_ROOT / ".scorestream" / "jars")
    for path, old, new in changes:
        text = (root / path).read_text()
        assert old in text
        (root / path).write_text(text.replace(old, new))
    return root


def upgrade(system, job, code, *args):
    """The upgrade command; one that has not returned after 400 s is stopped (SIGTERM: it stops the new version it
    started) and comes back with returncode -1 and what it had said, so that the test's failure shows where it was."""
    argv = [sys.executable, "-m", "scorestream.cli", "upgrade", job, *args]
    proc = subprocess.Popen(argv, env=system.env | {"PYTHONUNBUFFERED": "1"}, cwd=code, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=400)
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        return subprocess.CompletedProcess(argv, -1, stdout + "\n(stopped after 400 s)", stderr)


def test_upgrade_refusals_change_nothing(system, tmp_path):
    before = JobHome(system.home, "rendezvous").current()
    dry = upgrade(system, "rendezvous", code_copy(tmp_path / "a"), "--dry-run")
    assert dry.returncode == 0 and "dry run: nothing changed" in dry.stdout and "swap tokens" in dry.stdout, dry.stderr
    assert "the host's CPUs are" in dry.stdout

    from savepoints.upgrade import UpgradeLock
    with UpgradeLock(JobHome(system.home, "rendezvous")):
        busy = upgrade(system, "rendezvous", code_copy(tmp_path / "b"))
    assert busy.returncode != 0 and "an upgrade of this job is under way" in busy.stderr

    # the keyed operator's uid changed: its state has nowhere to go
    renamed = code_copy(tmp_path / "c", ("rendezvous/job.py", '.uid("rendezvous")', '.uid("rendezvous.v2")'))
    refused = upgrade(system, "rendezvous", renamed)
    assert refused.returncode != 0 and "the savepoint does not match the new code" in refused.stderr, refused.stderr
    assert "rendezvous" in refused.stderr.split("operator")[1]          # named: id and description
    assert JobHome(system.home, "rendezvous").current() == before
    assert not (system.home / "run" / "flink.rendezvous.next.pid").exists()
    report = system.load(50, 2)
    assert (report.answered, report.duplicates) == (report.published, 0)

    ManagedProcess("flink.extract", system.home).stop()
    stopped = upgrade(system, "extract", code_copy(tmp_path / "d"))
    assert stopped.returncode != 0 and "the extract job is not running" in stopped.stderr
    assert system.cli("up", "--policy", str(system.policy)).returncode == 0


def upgrade_both(system, code, done: dict):
    """An action for swap_load: the rendezvous and the extract job upgraded to `code` at once; each one's
    CompletedProcess in done[job], when it returned (monotonic) in done[job + "_at"]."""
    def act():
        def one(job):
            done[job] = upgrade(system, job, code)
            done[job + "_at"] = time.monotonic()
        both = [threading.Thread(target=one, args=(job,)) for job in ("rendezvous", "extract")]
        for t in both:
            t.start()
        for t in both:
            t.join()
    return act


def _owner(s, cut: dict[int, int]) -> str:
    """The deployment that owns a sent request by the cut: old before its partition's token, new after."""
    return "old" if s.offset < cut[s.partition] else "new"


def _sides(load, cut: dict[int, int], least: int):
    """_owner by this cut, checked to give at least `least` requests to each side."""
    sides = Counter(_owner(s, cut) for s in load.sent.values())
    assert sides["old"] > least and sides["new"] > least, sides
    return lambda s: _owner(s, cut)


def check_answer_cut(load, cut: dict[int, int], old: str, new: str, least: int) -> None:
    """Every request answered by the rendezvous deployment that owns it by the cut; at least `least` on each side."""
    side, by = _sides(load, cut, least), {"old": old, "new": new}
    wrong = [rid for rid, s in load.sent.items() if s.answers[0][1] != by[side(s)]]
    assert not wrong, f"{len(wrong)} answered by the wrong deployment, e.g. {load.sent[wrong[0]]}"


def check_extract_cut(features, load, cut: dict[int, int], old: str, new: str, least: int) -> None:
    """The features of every request sent, read from `features` (assigned before the load), exactly once,
    each from the extract deployment that owns it by the cut; at least `least` requests on each side."""
    extracted: dict[str, list[str]] = {}
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 3:
        batch = features.consume(5000, timeout=0.5)
        idle_since = time.monotonic() if batch else idle_since
        for msg in batch:
            doc = orjson.loads(msg.value())
            if doc["request_id"] in load.sent:
                extracted.setdefault(doc["request_id"], []).append(doc["extracted_by"]["deployment"])
    features.close()
    assert sorted(extracted) == sorted(load.sent) and all(len(v) == 1 for v in extracted.values())
    side, by = _sides(load, cut, least), {"old": old, "new": new}
    assert all(extracted[rid] == [by[side(s)]] for rid, s in load.sent.items())


@pytest.mark.timeout(660)
def test_upgrades_under_load(system, tmp_path):
    """One load at 300/s (a minute, and 15 s more once both upgrades are done); the rendezvous and the extract job
    upgraded at once: every request answered once, before the cut by the old deployment, after it by the new;
    features of every request once, from the extract deployment that owns it."""
    from savepoints.bench import swap_load
    from savepoints.timeline import CpuTrace, timeline
    from scorestream.client import assigned_consumer
    from scorestream.settings import StackSettings
    warm_up_at(300, 400, system.bootstrap, system.registry)
    require_capacity(lambda: system.load(300, 10), spare=0.1)
    old = {job: JobHome(system.home, job).current() for job in ("rendezvous", "extract")}
    code = code_copy(tmp_path, ("rendezvous/core.py", "GRACE_MS = 10_000", "GRACE_MS = 10_000  # v2"),
                     ("extractors/job.py", 'STAGE = "extract"', 'STAGE = "extract"  # v2'))
    features = assigned_consumer(system.registry.name("features"), system.bootstrap)
    done = {}
    act = upgrade_both(system, code, done)
    t0, t_wall = time.monotonic(), time.time() * 1000
    with CpuTrace(StackSettings(home=system.home)) as cpu:
        load = swap_load(system.registry.name("requests"), system.registry.name("results"), 300, 60, 400,
                         system.bootstrap, action=act, action_at_s=5, drain_s=20, after_s=15)
    for job in ("rendezvous", "extract"):
        assert done[job].returncode == 0, done[job].stdout + done[job].stderr
        print(f"\n{job} upgraded {done[job + '_at'] - t0:.0f}s into the load:\n{done[job].stdout}{done[job].stderr}")
    print(f"300/s for {len(load.sent) / 300:.0f} s with both upgrades: {load.summary()}")
    upgraded_at = t_wall + 1000 * (max(done["rendezvous_at"], done["extract_at"]) - t0)
    print(f"  during the upgrades: {load.summary(t_wall + 5000, upgraded_at)}")
    print(f"  after them (same run): {load.summary(upgraded_at + 1000)}")
    new = {job: JobHome(system.home, job).current() for job in ("rendezvous", "extract")}
    for job in new:
        assert new[job].deployment != old[job].deployment and new[job].version != old[job].version
    assert not load.lost and not load.doubled
    requests = system.registry.name("requests")
    cut = {job: _token_offsets(done[job].stderr, requests) for job in new}
    check_answer_cut(load, cut["rendezvous"], old["rendezvous"].deployment, new["rendezvous"].deployment,
                     least=1000)
    # Answers later than the SLA + 50 ms: measured and printed, not asserted. On the shared 2-core machine some
    # still come in the young system's first seconds; none in the last three runs of the upgrades themselves,
    # 0-842 before the new versions waited at autogroup nice 10 (docs/savepoints.md, figures).
    late = [x for x in load.latencies() if x > 400 + 50]
    print(f"  later than SLA + 50 ms: {len(late)} of {len(load.sent)}, worst {max(load.latencies()):.0f} ms")

    def owners(s):          # who owns the request by each job's cut
        return " ".join(f"{job} {_owner(s, c)}" for job, c in cut.items())
    print("  timeline:\n" + "\n".join(timeline(load, {job: done[job].stderr for job in new}, cpu, owners)))

    check_extract_cut(features, load, cut["extract"], old["extract"].deployment, new["extract"].deployment,
                      least=1000)


def _token_offsets(text: str, topic: str) -> dict[int, int]:
    import ast
    line = next(line for line in text.splitlines() if "swap tokens written" in line)
    part = line.split(f"{topic} ", 1)[1].split("}", 1)[0] + "}"
    return ast.literal_eval(part)

