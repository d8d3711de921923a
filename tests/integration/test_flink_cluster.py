"""The system on a standalone Flink session cluster (`scorestream up --flink URL`): the cluster started from the
distribution the apache-flink package ships (savepoints/cluster.py), the real broker, the real parts. Requests are
answered once each; a Python worker killed makes Flink restart the rendezvous, which answers nothing twice;
status, savepoints and an upgrade work on the cluster's jobs; `down` stops the jobs with a savepoint and leaves
the cluster running. The cluster is stopped at the end, always."""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from savepoints.cluster import SessionCluster
from savepoints.registry import JobHome
from savepoints.rest import FlinkRest
from tests.capacity import require_capacity
from tests.integration.test_savepoints import (System, _token_offsets, check_answer_cut, check_extract_cut,
                                               code_copy, upgrade_both)

pytestmark = pytest.mark.slow      # a cluster, the whole system and an upgrade: minutes; `make test-slow`


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with SessionCluster(tmp_path_factory.mktemp("flink-cluster")) as c:
        yield c


@contextmanager
def system_on(cluster: SessionCluster, home):
    """The whole system in `home`, its jobs on `cluster` (`up --flink`); `down` at the end, always."""
    s = System.in_home(home)
    try:
        started = s.cli("up", "--policy", str(s.policy), "--flink", cluster.url)
        assert started.returncode == 0, started.stdout + started.stderr
        yield s
    finally:
        s.cli("down")


@pytest.fixture(scope="module")
def system(cluster, tmp_path_factory):
    with system_on(cluster, tmp_path_factory.mktemp("on-cluster")) as s:
        yield s


def live_jobs(cluster) -> dict[str, str]:
    return {j["jid"]: j["name"] for j in FlinkRest(cluster.url).jobs() if j["state"] == "RUNNING"}


def test_jobs_on_the_cluster_answer_each_request_once(system, cluster):
    deployments = {job: JobHome(system.home, job).current() for job in ("extract", "rendezvous")}
    assert all(d.rest == cluster.url for d in deployments.values())
    assert live_jobs(cluster) == {deployments["extract"].flink_job_id: "extract",
                                  deployments["rendezvous"].flink_job_id: "rendezvous"}
    status = system.cli("status")
    assert status.returncode == 0 and deployments["rendezvous"].flink_job_id in status.stdout, status.stderr
    assert cluster.url in status.stdout

    report = system.load(100, 10, drain_s=30)
    assert (report.answered, report.duplicates) == (report.published, 0)
    assert max(system.answers_per_request().values()) == 1

    taken = system.cli("savepoint", "rendezvous")
    assert taken.returncode == 0, taken.stderr
    assert "savepoint" in system.cli("savepoints", "rendezvous").stdout
    # `up` again: the jobs are running on the cluster, nothing is submitted twice
    again = system.cli("up", "--policy", str(system.policy))
    assert again.returncode == 0, again.stderr
    assert len(live_jobs(cluster)) == 2


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:port (its socket's inode in /proc/net/tcp, then in a /proc/*/fd)."""
    inodes = {line.split()[9] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
              if line.split()[3] == "0A" and int(line.split()[1].rsplit(":", 1)[1], 16) == port}
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:
            continue
    return None


@pytest.mark.timeout(600)
def test_a_python_worker_killed_is_restarted_by_flink_and_answers_nothing_twice(system, cluster):
    """Flink itself restarts the rendezvous from its last checkpoint when its Python worker dies (an OOM kill):
    the job reads what it answered since (rendezvous/recovery.py) and answers none of it again."""
    from savepoints.bench import swap_load
    job_id = JobHome(system.home, "rendezvous").current().flink_job_id
    worker = listening_pid(int(system.env["SCORESTREAM_METRICS_PORT_BASE"]))     # its /metrics
    assert worker is not None, "the rendezvous's Python worker was not found by its metrics port"
    load = swap_load(system.registry.name("requests"), system.registry.name("results"), 50, 20, 400,
                     system.bootstrap, action=lambda: os.kill(worker, signal.SIGKILL), action_at_s=8, drain_s=60,
                     after_s=10)
    rest = FlinkRest(cluster.url)
    assert rest.failures(job_id), "Flink saw no failure of the job"
    assert rest.job(job_id)["state"] == "RUNNING"
    print(f"\nthe rendezvous's Python worker killed 8 s into 50/s: {load.summary()}")
    assert not load.lost and not load.doubled
    assert max(system.answers_per_request().values()) == 1


@pytest.mark.timeout(600)
def test_upgrade_on_the_cluster_is_a_new_job_beside_the_old(system, cluster, tmp_path):
    """The rendezvous and the extract job upgraded at once under 100/s: each new version is a second job on the
    same cluster (no new TaskManager); every request answered once, before the cut by the old rendezvous, after
    it by the new; its features once, from the extract deployment that owns it."""
    from savepoints.bench import swap_load
    from scorestream.client import assigned_consumer
    jobs = ("rendezvous", "extract")
    require_capacity(lambda: system.load(100, 10), spare=0.2)
    old = {job: JobHome(system.home, job).current() for job in jobs}
    taskmanagers = FlinkRest(cluster.url).overview()["taskmanagers"]
    code = code_copy(tmp_path, ("rendezvous/core.py", "GRACE_MS = 10_000", "GRACE_MS = 10_000  # v2"),
                     ("extractors/job.py", 'STAGE = "extract"', 'STAGE = "extract"  # v2'))
    features = assigned_consumer(system.registry.name("features"), system.bootstrap)
    done = {}
    load = swap_load(system.registry.name("requests"), system.registry.name("results"), 100, 30, 400,
                     system.bootstrap, action=upgrade_both(system, code, done), action_at_s=5, drain_s=30,
                     after_s=10)
    for job in jobs:
        assert done[job].returncode == 0, done[job].stdout + done[job].stderr
        print(f"\n{job} upgraded on the session cluster:\n{done[job].stdout}{done[job].stderr}")
    print(f"100/s around them: {load.summary()}")
    new = {job: JobHome(system.home, job).current() for job in jobs}
    rest = FlinkRest(cluster.url)
    for job in jobs:
        assert new[job].deployment != old[job].deployment and new[job].version != old[job].version
        assert new[job].rest == cluster.url and new[job].flink_job_id in live_jobs(cluster)
        assert rest.job(old[job].flink_job_id)["state"] == "FINISHED"     # stopped with a savepoint
    assert rest.overview()["taskmanagers"] == taskmanagers
    assert not load.lost and not load.doubled
    requests = system.registry.name("requests")
    cut = {job: _token_offsets(done[job].stderr, requests) for job in jobs}
    check_answer_cut(load, cut["rendezvous"], old["rendezvous"].deployment, new["rendezvous"].deployment,
                     least=100)
    check_extract_cut(features, load, cut["extract"], old["extract"].deployment, new["extract"].deployment,
                      least=100)


def test_down_stops_the_jobs_with_a_savepoint_and_leaves_the_cluster(system, cluster):
    """Stopped, not cancelled: a cancel can take the TaskManager down with it (docs/savepoints.md)."""
    jobs = live_jobs(cluster)
    down_ms = time.time() * 1000
    stopped = system.cli("down")
    assert stopped.returncode == 0 and "flink.rendezvous" in stopped.stdout, stopped.stderr
    rest = FlinkRest(cluster.url)
    deadline = time.monotonic() + 30
    while any(rest.job(jid)["state"] != "FINISHED" for jid in jobs):
        assert time.monotonic() < deadline, {jid: rest.job(jid)["state"] for jid in jobs}
        time.sleep(0.5)
    for job in ("extract", "rendezvous"):
        newest = JobHome(system.home, job).restore_points()[-1]
        assert newest.kind == "savepoint" and newest.time_ms >= down_ms - 1000, (job, newest)
    assert rest.overview()["taskmanagers"] >= 1     # the cluster itself runs on


def test_a_cluster_short_of_slots_starts_nothing(system, cluster, tmp_path):
    """Every slot taken (a second system's need is more than the cluster has): refused before anything starts."""
    busy = SessionCluster(tmp_path / "tiny", slots=1)
    busy.start()
    try:
        refused = system.cli("up", "--policy", str(system.policy), "--flink", busy.url)
    finally:
        busy.stop()
    assert refused.returncode != 0 and "free task slot" in refused.stderr, refused.stdout + refused.stderr
    assert "kafka" in system.cli("status").stdout and not list((system.home / "run").glob("flink.*.pid"))
