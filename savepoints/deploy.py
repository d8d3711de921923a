"""Start a Flink job of the stack as a deployment: from a restore point, with retained checkpoints, recorded.

Every start is a deployment (an id, the code version, the REST address, the Flink
job id) recorded under <home>/savepoints/<job>/. Checkpoints go there too and are
retained when the job is cancelled or dies, so the next start restores from the
newest restore point (`restore="latest"`, what `up` asks for).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from rendezvous.recovery import answered_since
from savepoints.registry import Deployment, JobHome, RestorePoint, new_deployment_id
from savepoints.rest import FlinkRest
from scorestream import flink, topics
from scorestream.errors import UserError
from scorestream.settings import KafkaSettings, StackSettings


def restore_point(home: JobHome, restore: str, prefix: str) -> RestorePoint | None:
    """`latest` (the newest restore point on these topics, if any), `none`, or a savepoint/checkpoint directory."""
    if restore == "none" or restore.startswith("wait:"):
        return None
    if restore == "latest":
        return home.latest(prefix)
    path = Path(restore.removeprefix("file:")).resolve()
    meta = path / "_metadata"
    if not meta.exists():
        raise UserError(f"{path} is not a savepoint or checkpoint (no _metadata in it); "
                        f"`scorestream savepoints {home.job}` lists them")
    return RestorePoint(home.job, "savepoint", path, int(meta.stat().st_mtime * 1000), 0, "")


def flink_config(home: JobHome, point: RestorePoint | None) -> dict[str, str]:
    config = {
        "execution.checkpointing.dir": home.checkpoints.resolve().as_uri(),
        "execution.checkpointing.savepoint-dir": home.dir.resolve().as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "1",
    }
    if point is not None:
        config["execution.state-recovery.path"] = point.path.resolve().as_uri()
    return config


LIVE = ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING", "RECONCILING")
RUNNING_TIMEOUT_S = 120.0       # on a cluster: from the submission until every task runs


def check_cluster(url: str, jobs: int = 2) -> FlinkRest:
    """The session cluster at `url` answers and has a free task slot for each of `jobs`; else a UserError."""
    rest = FlinkRest(url)
    overview = rest.overview()
    free = overview.get("slots-available", 0)
    if free < jobs:
        raise UserError(f"the Flink cluster at {url} has {free} free task slot(s) of {overview.get('slots-total', 0)}; "
                        f"the system needs {jobs} (one per job, and one more per job during an upgrade): raise "
                        f"taskmanager.numberOfTaskSlots or start another TaskManager (docs/savepoints.md)")
    return rest


def run(job: str, build_job, restore: str = "latest", deployment_id: str | None = None,
        predecessor: str | None = None, cluster: str | None = None) -> None:
    """Run `job` until it is cancelled or stopped. build_job(env, answered_before, answered_by) builds its graph.

    predecessor: this start is the new side of a hot swap (savepoints/upgrade.py): it is recorded among the
    deployments, and becomes the current one only when the upgrade has cut over to it.
    restore `wait:FILE`: start the JVM and build the graph, then wait for FILE to name the savepoint to start from.
    cluster: the REST address of a session cluster to submit the job to (else: its own mini cluster). The job's
    current deployment still live there (this process was killed, the job was not) is watched, not submitted again.
    """
    settings, kafka_settings = StackSettings(), KafkaSettings()
    home = JobHome(settings.home, job)
    home.dir.mkdir(parents=True, exist_ok=True)
    if cluster:
        cluster = flink.cluster_url(cluster)
        rest = check_cluster(cluster, jobs=0)
        current = home.current()
        if not predecessor and current and current.rest == rest.url and _state(rest, current.flink_job_id) in LIVE:
            return _watch(job, rest, current, home)
        check_cluster(cluster, jobs=1)
    point = restore_point(home, restore, kafka_settings.topic_prefix)
    answered: frozenset = frozenset()
    if point is not None:
        print(f"{job}: restoring from the {point.kind} {point.path}", flush=True)
        if job == "rendezvous":
            t0 = time.monotonic()
            results = topics.TopicRegistry.load().name("results")
            answered = frozenset(answered_since(results, point.time_ms, kafka_settings.bootstrap()))
            print(f"{job}: {len(answered)} requests answered since the restore point read from {results} "
                  f"in {time.monotonic() - t0:.1f}s; they will not be answered again", flush=True)
    deployment_id, version = deployment_id or new_deployment_id(), flink.code_version(job)
    answered_by = {"job": job, "version": version, "deployment": deployment_id}

    def savepoint_when_ready() -> dict[str, str] | None:
        nonlocal point
        if not restore.startswith("wait:"):
            return None
        handoff = Path(restore.removeprefix("wait:"))
        print(f"{job}: ready, waiting for the savepoint to start from in {handoff}", flush=True)
        while not handoff.exists() or not handoff.read_text().strip():
            time.sleep(0.05)
        point = restore_point(home, handoff.read_text().strip(), kafka_settings.topic_prefix)
        print(f"{job}: restoring from the {point.kind} {point.path}", flush=True)
        return {"execution.state-recovery.path": point.path.resolve().as_uri()}

    def submitted(job_id: str, rest: str) -> None:
        if cluster:
            _wait_running(job, FlinkRest(rest), job_id)
        home.record(Deployment(job, deployment_id, version, rest, job_id, kafka_settings.topic_prefix,
                               str(point.path) if point else None, int(time.time() * 1000)), current=not predecessor)
        home.prune()

    started = time.time()
    # each deployment's JVM logs apart: during an upgrade two run side by side
    flink.run_job(job, lambda env: build_job(env, answered, answered_by), flink_config(home, point), submitted,
                  savepoint_when_ready, cluster, log_name=f"{home.jvm_logs.name}/{deployment_id}")
    # the job ended by itself: fine only if it was stopped with a savepoint
    if not any(p.kind == "savepoint" and p.time_ms >= started * 1000 for p in home.restore_points()):
        raise UserError(f"{job}: the job ended without a savepoint; see its log")
    print(f"{job}: stopped with a savepoint; `scorestream up` restarts it from there", flush=True)


def _state(rest: FlinkRest, job_id: str) -> str:
    try:
        return rest.job(job_id)["state"]
    except UserError:
        return "unknown"


def _wait_running(job: str, rest: FlinkRest, job_id: str) -> None:
    """Every task of the job runs on the cluster (a job short of slots waits for them: say why, give up)."""
    deadline = time.monotonic() + RUNNING_TIMEOUT_S
    while True:
        info = rest.job(job_id)
        if info["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in info["vertices"]):
            return
        failed = rest.failure_reason(job_id)
        if failed:         # a task that fails as it starts (e.g. in its open()) would only fail again
            raise UserError(f"{job}: the job failed on the cluster as it started: {failed}")
        if info["state"] in ("FAILED", "CANCELED", "FINISHED"):
            raise UserError(f"{job}: the cluster at {rest.url} ended the job ({info['state']}) right after taking it; "
                            f"see its exceptions at {rest.url}/jobs/{job_id}/exceptions")
        if time.monotonic() > deadline:
            waiting = sorted({v["status"] for v in info["vertices"] if v["status"] != "RUNNING"})
            raise UserError(f"{job}: its tasks did not all run on the cluster at {rest.url} within "
                            f"{RUNNING_TIMEOUT_S:.0f}s (still {', '.join(waiting)}: free task slots?); cancelled it")
        time.sleep(0.5)


def _watch(job: str, rest: FlinkRest, deployment: Deployment, home: JobHome) -> None:
    """Follow a job already live on the cluster until it ends; SIGTERM ends it (as for a job submitted here)."""
    print(f"{job}: job {deployment.flink_job_id} already runs on the cluster (deployment {deployment.deployment}): "
          f"submitted before, REST {rest.url}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    state = "unknown"
    try:
        while (state := _state(rest, deployment.flink_job_id)) in LIVE:
            time.sleep(1.0)
    finally:
        flink.end_on_cluster(rest.url, deployment.flink_job_id, home.dir.resolve().as_uri())
    if state != "FINISHED":
        raise UserError(f"{job}: the job ended with status {state}")
