"""The compose system with its Flink jobs on a session cluster of its own (compose/flink-cluster.yaml): a
JobManager and a TaskManager from the distribution that apache-flink ships. Both jobs run there and every
request is answered once; stopping the rendezvous service stops its job with a savepoint and leaves the
cluster up; started again, it resumes from there and answers again."""

from __future__ import annotations

import time

from savepoints.rest import FlinkRest


def running_jobs(system) -> dict[str, str]:
    return {j["name"]: j["jid"] for j in FlinkRest(system.flink_url).jobs() if j["state"] == "RUNNING"}


def test_the_jobs_run_on_the_cluster_and_resume_after_a_stop(flink_cluster_compose_system):
    system = flink_cluster_compose_system
    jobs = running_jobs(system)
    assert set(jobs) == {"extract", "rendezvous"}, FlinkRest(system.flink_url).jobs()
    # no warm(): what is tested is that each is answered, once; the latency (thread mode, docs/savepoints.md) is
    # printed, not asserted
    report = system.load(1000, rate=100, drain_s=60)
    print(f"on the Flink cluster: answered {report.answered}/{report.published}, rules {dict(report.by_rule)}, "
          f"p50 {report.percentile(50):.0f} ms p99 {report.percentile(99):.0f} ms")
    assert (report.answered, report.duplicates) == (report.published, 0)

    system.compose("stop", "rendezvous", timeout=120)
    rest = FlinkRest(system.flink_url)
    assert rest.job(jobs["rendezvous"])["state"] == "FINISHED"       # stopped with a savepoint, not cancelled
    assert rest.overview()["taskmanagers"] >= 1

    system.compose("start", "rendezvous")
    deadline = time.monotonic() + 180
    while "rendezvous" not in running_jobs(system):
        assert time.monotonic() < deadline, rest.jobs()
        time.sleep(2)
    assert "restoring from the savepoint" in system.compose("logs", "rendezvous").stdout
    system.wait_first_answer()
    again = system.load(300, rate=100, drain_s=60)
    assert (again.answered, again.duplicates) == (again.published, 0)
