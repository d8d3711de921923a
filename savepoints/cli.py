"""Verbs of savepoints (ops): `savepoints [JOB]` lists, `savepoint JOB [--stop]` takes one."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import click
from rich.table import Table

from savepoints.registry import JOBS, Deployment, JobHome, age
from savepoints.rest import FlinkRest
from scorestream.console import err, out
from scorestream.errors import UserError
from scorestream.settings import StackSettings


def running(job: str) -> tuple[JobHome, Deployment, FlinkRest]:
    """The job's current deployment and its REST client, or a UserError saying how to start it."""
    home = JobHome(StackSettings().home, job)
    deployment = home.current()
    rest = FlinkRest(deployment.rest) if deployment else None
    if deployment is None or not rest.reachable() or rest.job(deployment.flink_job_id)["state"] != "RUNNING":
        raise UserError(f"the {job} job is not running: start it with `scorestream up`")
    return home, deployment, rest


@click.command("savepoints")
@click.argument("job", type=click.Choice(JOBS), required=False)
def savepoints_cmd(job: str | None) -> None:
    """List the savepoints and retained checkpoints of the Flink jobs (or of JOB), newest last.

    Each is a directory under <home>/savepoints/<job>/ that `scorestream up`
    restores from (the newest on the same topics), or that `scorestream up
    --restore JOB=PATH` names.
    """
    table = Table("job", "kind", "completed", "size", "path")
    for name in [job] if job else JOBS:
        for p in JobHome(StackSettings().home, name).restore_points():
            table.add_row(name, p.kind, age(p.time_ms), f"{p.size_bytes / 1024:,.1f} KiB", str(p.path))
    if not table.rows:
        out.print("no savepoints or retained checkpoints yet")
        return
    out.print(table)


@click.command("savepoint")
@click.argument("job", type=click.Choice(JOBS))
@click.option("--stop", is_flag=True, help="Stop the job with the savepoint (no drain: pending timers stay pending "
                                         "in the savepoint and fire after the restore).")
def savepoint_cmd(job: str, stop: bool) -> None:
    """Take a savepoint of a running job through Flink's REST API; it goes on running unless --stop.

    The savepoint lands in <home>/savepoints/<job>/; `scorestream up` then restarts
    a stopped job from it.
    """
    home, deployment, rest = running(job)
    t0 = time.monotonic()
    with err.status(f"{'stopping ' + job + ' with' if stop else 'taking'} a savepoint ..."):
        path = rest.savepoint(deployment.flink_job_id, home.dir.resolve().as_uri(), stop=stop)
    path = path.removeprefix("file:")
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    out.print(f"savepoint of {job} ({deployment.flink_job_id}) in {time.monotonic() - t0:.1f}s, "
              f"{size / 1024:,.1f} KiB: {path}" + ("; the job is stopped" if stop else ""))


def job_rows(home) -> list[tuple[str, ...]]:
    """For `status`: each job's Flink job id, state, last checkpoint, code version and REST address."""
    rows = []
    for name in JOBS:
        deployment = JobHome(home, name).current()
        if deployment is None:
            continue
        rest = FlinkRest(deployment.rest, timeout_s=3)
        try:
            state = rest.job(deployment.flink_job_id)["state"]
            last = rest.last_checkpoint(deployment.flink_job_id)
            checkpoint = (f"#{last.id} {age(last.trigger_ms)}, {last.size_bytes / 1024:,.1f} KiB" if last
                          else "none yet")
        except UserError:
            state, checkpoint = "gone", "-"
        rows.append((name, deployment.flink_job_id, state, checkpoint, deployment.version, deployment.rest))
    return rows


@click.command("upgrade")
@click.argument("job", type=click.Choice(JOBS))
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@click.option("--grace-ms", type=float, default=1000.0, help="How long after the SLA the old version may still answer.")
def upgrade_cmd(job: str, dry_run: bool, grace_ms: float) -> None:
    """Hot swap JOB to the code on disk now, under load, nothing lost, nothing answered twice.

    The new version starts beside the running one from its savepoint (the
    bandit's learned state and the policy in force carry over), a swap token on
    every partition of the job's input marks the cut: the old version answers
    what came before it, the new one what came after (every result names its
    deployment in `answered_by`). A new version that fails never takes traffic.
    Undo: the same command with the previous code checked out. The plan
    first looks at the host's CPUs: over 70 % busy, it warns that the new
    version's start will delay answers until the cut.
    """
    from savepoints import upgrade

    home = JobHome(StackSettings().home, job)
    with upgrade.UpgradeLock(home):
        p = upgrade.plan(job, grace_ms)
        for line in p.lines():
            out.print(line)
        if dry_run:
            out.print("dry run: nothing changed")
            return
        # SIGTERM (a supervisor, a caller's timeout) ends it as Ctrl-C does: the new version is stopped, the old
        # one goes on answering; by default it would end this process alone and leave the new version running
        signal.signal(signal.SIGTERM, _terminated)
        report = upgrade.run(p, say=lambda line: err.print(f"{_clock()} {line}", highlight=False, soft_wrap=True))
    out.print(f"upgraded {job}: {p.old.deployment} ({p.old.version}) -> {report.new.deployment} ({report.new.version}); "
              f"savepoint {report.savepoint_s:.1f}s {report.savepoint_bytes / 1024:,.1f} KiB; new version ready in "
              f"{report.new_ready_s:.1f}s; cut at {report.cut_ms}")


def _terminated(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def _clock() -> str:
    """The time of day to the millisecond: an upgrade's steps, to lay beside the answers' latencies."""
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
