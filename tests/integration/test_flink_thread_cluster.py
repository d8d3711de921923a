"""The system on a session cluster whose Python runs in thread mode (`python -m savepoints.cluster DIR --thread`):
the jobs follow the cluster's mode, answer each request once, at the embedded system's speed. An upgrade to new
code in the same TaskManager is refused (its interpreter holds the old code): the old version goes on answering."""

from __future__ import annotations

import pytest

from savepoints.cluster import SessionCluster
from savepoints.registry import JobHome
from savepoints.rest import FlinkRest
from tests.integration.test_flink_cluster import system_on
from tests.integration.test_savepoints import code_copy, upgrade

pytestmark = pytest.mark.slow      # a cluster and the whole system: minutes; `make test-slow`


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with SessionCluster(tmp_path_factory.mktemp("flink-thread"), python="thread") as c:
        yield c


@pytest.fixture(scope="module")
def system(cluster, tmp_path_factory):
    with system_on(cluster, tmp_path_factory.mktemp("on-thread-cluster")) as s:
        yield s


def test_jobs_run_in_the_clusters_thread_mode_and_answer_each_request_once(system, cluster):
    from scorestream.flink import cluster_python_mode
    assert cluster_python_mode(cluster.url) == "thread"
    rest = FlinkRest(cluster.url)
    for job in ("extract", "rendezvous"):
        deployment = JobHome(system.home, job).current()
        assert rest.job(deployment.flink_job_id)["state"] == "RUNNING"
    report = system.load(100, 10, drain_s=30)
    print(f"\nthread-mode cluster at 100/s: {report.answered} of {report.published} answered, "
          f"{report.within_sla:.1%} within the 400 ms SLA, p50 {report.percentile(50):.1f} ms, "
          f"p99 {report.percentile(99):.1f} ms")
    assert (report.answered, report.duplicates) == (report.published, 0)
    assert max(system.answers_per_request().values()) == 1


def test_an_upgrade_into_the_interpreter_of_the_old_code_is_refused(system, cluster, tmp_path):
    old = JobHome(system.home, "rendezvous").current()
    code = code_copy(tmp_path, ("rendezvous/core.py", "GRACE_MS = 10_000", "GRACE_MS = 10_000  # v2"))
    done = upgrade(system, "rendezvous", code)
    said = " ".join((done.stdout + done.stderr).split())
    print(f"\nupgrade on a one-TaskManager thread-mode cluster: rc {done.returncode}\n{done.stdout}{done.stderr}")
    assert done.returncode != 0
    assert "has code version" in said, said
    assert JobHome(system.home, "rendezvous").current().deployment == old.deployment
    report = system.load(50, 4, drain_s=30)
    assert (report.answered, report.duplicates) == (report.published, 0)
