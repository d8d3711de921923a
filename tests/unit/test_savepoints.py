"""Pure logic of savepoints and hot swap: ownership around a swap token, marking what a crashed run answered,
restore points, tokens in the archive."""

from __future__ import annotations

import json
import os
import time

from decoy.record import ArchivedRequest
from decoy.replay import ReplaySummary, _decode
from rendezvous import core
from rendezvous.policy import Arm, Policy
from savepoints.registry import Deployment, JobHome
from savepoints.upgrade import Plan, _without
from scorestream import swap
from scorestream.contract import KafkaRecord, Request

POLICY = Policy(1, 100, (Arm("m@1"),), (), 0.5)


def test_a_marked_request_is_never_answered_and_freed_after_grace_and_outcome_horizon():
    state = core.RequestState()
    assert core.mark_answered(state) and not core.mark_answered(state)
    step = core.on_request(state, "r1", ts=1000, preferred="m@1", policy=POLICY, now=1001)
    assert step.result is None and step.timers == (1000 + max(100 + core.GRACE_MS, POLICY.outcome_horizon_s * 1000),)
    assert core.on_score(state, "r1", "m@1", 0.9, POLICY, now=1005).event == "late_score"


def test_a_pending_request_marked_after_restore_is_not_answered_by_its_timer():
    state = core.RequestState()
    core.on_request(state, "r1", ts=1000, preferred="m@1", policy=POLICY, now=1001)
    core.mark_answered(state)
    step = core.on_timer(state, "r1", POLICY, now=1100)        # the SLA deadline: no default answer
    assert step.result is None and not step.clear


def test_state_pickles_with_its_owner_and_old_states_still_load():
    import pickle
    state = core.RequestState(ts=1, owner="d1")
    assert pickle.loads(pickle.dumps(state)).owner == "d1"
    assert core.RequestState(*(1, None, {}, False, None, None)).owner is None     # as pickled before owners


def test_ownership_per_partition_and_a_second_upgrade():
    first, second = swap.Ownership("a"), swap.Ownership("b", predecessor="a")
    for o in (first, second):
        o.token(1, {"from": "a", "to": "b"})
    assert [first.owns(p) for p in range(3)] == [True, False, True]
    assert [second.owns(p) for p in range(3)] == [False, True, False]
    assert second.token(1, {"from": "x", "to": "y"}) is None            # another job's upgrade
    second.token(1, {"from": "b", "to": "c"})                           # b hands partition 1 on to c
    assert not second.owns(1)


def test_a_restarted_task_keeps_the_ownership_it_had():
    """Flink restarts a task in the same interpreter from a checkpoint that may lie past the tokens: a fresh
    Ownership would never own a partition again."""
    taken = swap.ownership("rendezvous", "d-restart", "d-before")
    taken.token(0, {"from": "d-before", "to": "d-restart"})
    assert swap.ownership("rendezvous", "d-restart", "d-before").owns(0)
    assert not swap.ownership("rendezvous", "d-other", "d-before").owns(0)
    assert not swap.ownership("extract", "d-restart", "d-before").owns(0)


def test_a_swap_token_is_archived_as_control_and_never_replayed():
    token = swap.token_record("rendezvous", "a", "b", "a>b")
    assert swap.is_control(token.headers) and not swap.is_control(())
    original = KafkaRecord(token.key, token.value, token.headers, "scoring.requests", 0, 5, 1)
    archived = ArchivedRequest(original, archived_at=2).to_record()
    summary = ReplaySummary(time_range=None)
    assert _decode(archived, summary) is None and summary.control == 1 and not summary.malformed
    request = Request("r1", 1, {"x": 1}).to_record()
    kept = _decode(ArchivedRequest(KafkaRecord(request.key, request.value, (), "scoring.requests", 0, 6, 1), 2)
                   .to_record(), summary)
    assert kept[1].request_id == "r1"


def _point(d, name: str, mtime: float):
    (d / name).mkdir(parents=True)
    (d / name / "_metadata").write_bytes(b"x" * 10)
    os.utime(d / name / "_metadata", (mtime, mtime))


def test_latest_restore_point_is_the_current_deployments_and_on_the_same_topics(tmp_path):
    home = JobHome(tmp_path, "rendezvous")
    now = time.time()
    for jid, prefix in (("aaaaaa11", ""), ("bbbbbb22", ""), ("cccccc33", "other.")):
        home.record(Deployment("rendezvous", jid[:2], "v", "http://x", jid, prefix, None, 0), current=False)
    home.make_current(home.find("aa"))
    _point(home.checkpoints / "aaaaaa11", "chk-3", now - 30)
    _point(home.checkpoints / "bbbbbb22", "chk-9", now - 10)          # newer, but not the current deployment's
    _point(home.checkpoints / "cccccc33", "chk-1", now)               # other topics
    assert home.latest("").path.name == "chk-3"
    _point(home.dir, "savepoint-aaaaaa-1", now - 5)
    assert home.latest("").path.name == "savepoint-aaaaaa-1"
    assert home.latest("other.").path.name == "chk-1"
    assert [p.kind for p in home.restore_points()] == ["checkpoint", "checkpoint", "savepoint", "checkpoint"]
    assert json.loads(home.deployment_file.read_text())["deployment"] == "aa"


def test_upgrade_replaces_the_restore_options_of_the_old_command_line():
    argv = ["python", "-m", "scorestream.cli", "job", "rendezvous", "--restore", "latest", "--policy", "p.yaml"]
    assert _without(argv, "--restore", "--deployment-id") == argv[:5] + ["--policy", "p.yaml"]


def test_up_on_an_unreachable_flink_cluster_starts_nothing(tmp_path):
    """`up --flink URL` with nobody at URL: says so, before the broker or any part starts."""
    import subprocess
    import sys
    from scorestream.ports import free_port
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORESTREAM_")} | {
        "SCORESTREAM_HOME": str(tmp_path), "SCORESTREAM_KAFKA_PORT": str(free_port())}
    url = f"http://127.0.0.1:{free_port()}"
    refused = subprocess.run([sys.executable, "-m", "scorestream.cli", "up", "--flink", url], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and f"Flink at {url} is unreachable" in refused.stderr, refused.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "stack.json").exists()


def test_a_job_takes_its_code_to_the_cluster():
    """The shipped archive holds the packages the jobs' functions import, as on disk, and nothing else."""
    import zipfile
    from scorestream.flink import SHIPPED_PACKAGES, cluster_config
    config = cluster_config("127.0.0.1:8081", "extract", python_mode="process")
    assert (config["execution.target"], config["rest.address"], config["rest.port"]) == ("remote", "127.0.0.1", "8081")
    assert config["python.execution-mode"] == "process"
    assert "flink-sql-connector-kafka" in config["pipeline.jars"] and "flink-python" in config["pipeline.jars"]
    # a thread-mode cluster has flink-python on its classpath: shipped again, pemja's second load would fail
    thread = cluster_config("127.0.0.1:8081", "extract", python_mode="thread")
    assert thread["python.execution-mode"] == "thread" and "flink-python" not in thread["pipeline.jars"]
    names = zipfile.ZipFile(config["python.files"]).namelist()
    assert {"rendezvous/job.py", "extractors/job.py", "scorestream/swap.py"} <= set(names)
    assert {n.split("/")[0] for n in names} == set(SHIPPED_PACKAGES) and not any("__pycache__" in n for n in names)


def test_the_attempt_number_in_both_python_modes():
    """Process mode's context answers get_attempt_number(); thread mode's calls a method Flink 2 removed, so the
    attempt comes from the Java context's TaskInfo (what a restarted rendezvous looks at)."""
    from types import SimpleNamespace

    from scorestream.flink import attempt_number

    process = SimpleNamespace(get_attempt_number=lambda: 2)

    def removed():
        raise AttributeError("'pemja.PyJObject' object has no attribute 'getAttemptNumber'")

    info = SimpleNamespace(getAttemptNumber=lambda: 1)
    thread = SimpleNamespace(get_attempt_number=removed,
                             _runtime_context=SimpleNamespace(getTaskInfo=lambda: info))
    assert attempt_number(process) == 2 and attempt_number(thread) == 1


def test_prune_keeps_the_checkpoints_and_jvm_logs_of_the_latest_runs(tmp_path):
    home = JobHome(tmp_path, "rendezvous")
    for parent in (home.checkpoints, home.jvm_logs):
        for i in range(5):
            run = parent / f"run{i}"
            run.mkdir(parents=True)
            os.utime(run, (1_000 + i, 1_000 + i))
    (home.jvm_logs / "flink-root-python-vm.log").write_text("a log of before: not a run")
    home.prune()
    for parent in (home.checkpoints, home.jvm_logs):
        assert sorted(d.name for d in parent.iterdir() if d.is_dir()) == ["run2", "run3", "run4"]
    assert (home.jvm_logs / "flink-root-python-vm.log").exists()


def test_the_plan_warns_when_the_host_has_no_room_for_a_second_deployment():
    old = Deployment("rendezvous", "d1", "v1", "http://127.0.0.1:1", "f" * 32, "", None, 0)
    plan = Plan("rendezvous", old, "d2", "v2", [], {}, {"scoring.requests": 4}, 1100.0, host_busy=0.35)
    assert plan.lines()[-1] == "the host's CPUs are 35% busy: there is idle CPU for the new version's start"
    busy = Plan("rendezvous", old, "d2", "v2", [], {}, {"scoring.requests": 4}, 1100.0, host_busy=0.91)
    assert busy.lines()[-1].startswith("warning: the host's CPUs are 91% busy") and "later than the SLA" in busy.lines()[-1]
