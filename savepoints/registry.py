"""What lies under <home>/savepoints/<job>/: the deployments of the job, its savepoints, its retained checkpoints.

    <home>/savepoints/<job>/
        deployment.json                 the deployment running now (REST address, Flink job id, code version)
        deployments.jsonl               every deployment ever started, one per line
        savepoint-<jid6>-<random>/      savepoints (Flink names them; taken by `scorestream savepoint`)
        checkpoints/<flink job id>/chk-N/   the latest checkpoint of each run, retained after a cancel or a crash

A restore point is a savepoint or a retained checkpoint: a directory with Flink's `_metadata` in it.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

JOBS = ("extract", "rendezvous")
KEEP_RUNS = 3                      # checkpoint directories of the latest runs kept; older ones are deleted


@dataclass(frozen=True)
class Deployment:
    job: str
    deployment: str               # unique id of this start of the job
    version: str                  # code_version() when it started
    rest: str                     # the JobManager's REST address
    flink_job_id: str
    topic_prefix: str
    restored_from: str | None
    started_ms: int

    @property
    def answered_by(self) -> dict:
        """What each result of this deployment carries."""
        return {"job": self.job, "version": self.version, "deployment": self.deployment}


def new_deployment_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class RestorePoint:
    job: str
    kind: str                     # savepoint | checkpoint
    path: Path
    time_ms: int                  # when it was completed (its _metadata written)
    size_bytes: int
    flink_job_id: str             # of the run that wrote it (a prefix of it for savepoints)


class JobHome:
    def __init__(self, home: Path, job: str):
        self.job = job
        self.dir = Path(home) / "savepoints" / job
        self.jvm_logs = Path(home) / "logs" / f"flink.{job}"      # a folder per deployment (savepoints/deploy.py)

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def deployment_file(self) -> Path:
        return self.dir / "deployment.json"

    def record(self, deployment: Deployment, current: bool = True) -> None:
        """Add to the deployments; current: it is the one running now (else: see make_current)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(deployment))
        with open(self.dir / "deployments.jsonl", "a") as f:
            f.write(line + "\n")
        if current:
            self.make_current(deployment)

    def make_current(self, deployment: Deployment) -> None:
        line = json.dumps(asdict(deployment))
        tmp = self.deployment_file.with_suffix(".tmp")
        tmp.write_text(line)
        tmp.replace(self.deployment_file)

    def current(self) -> Deployment | None:
        """The deployment recorded last (it may have stopped since: ask its REST address)."""
        try:
            return Deployment(**json.loads(self.deployment_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def find(self, deployment_id: str) -> Deployment | None:
        return next((d for d in reversed(self.deployments()) if d.deployment == deployment_id), None)

    def deployments(self) -> list[Deployment]:
        try:
            lines = (self.dir / "deployments.jsonl").read_text().splitlines()
        except OSError:
            return []
        return [Deployment(**json.loads(line)) for line in lines if line.strip()]

    def restore_points(self) -> list[RestorePoint]:
        """Savepoints and retained checkpoints, oldest first."""
        points = []
        for meta in list(self.dir.glob("savepoint-*/_metadata")) + list(self.checkpoints.glob("*/chk-*/_metadata")):
            d = meta.parent
            kind = "savepoint" if d.name.startswith("savepoint-") else "checkpoint"
            jid = d.name.split("-")[1] if kind == "savepoint" else d.parent.name
            size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            points.append(RestorePoint(self.job, kind, d, int(meta.stat().st_mtime * 1000), size, jid))
        return sorted(points, key=lambda p: p.time_ms)

    def latest(self, topic_prefix: str) -> RestorePoint | None:
        """The newest restore point written by a deployment on the same topics (another prefix's state
        would restore Kafka offsets of other topics); the current deployment's own first (after a hot swap
        the old version's last checkpoint can be newer than the new one's)."""
        prefixes = {d.flink_job_id: d.topic_prefix for d in self.deployments()}
        current = self.current()
        points = self.restore_points()
        if current is not None:
            points = ([p for p in points if not current.flink_job_id.startswith(p.flink_job_id)]
                      + [p for p in points if current.flink_job_id.startswith(p.flink_job_id)])
        for point in reversed(points):
            owner = next((p for jid, p in prefixes.items() if jid.startswith(point.flink_job_id)), None)
            if owner == topic_prefix:
                return point
        return None

    def prune(self) -> None:
        """Keep the checkpoint directories and the JVM logs of the latest KEEP_RUNS runs."""
        for parent in (self.checkpoints, self.jvm_logs):
            runs = sorted((d for d in parent.glob("*") if d.is_dir()), key=lambda d: d.stat().st_mtime)
            for d in runs[:-KEEP_RUNS]:
                shutil.rmtree(d, ignore_errors=True)


def age(ms: int) -> str:
    seconds = max(0.0, time.time() - ms / 1000)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))
