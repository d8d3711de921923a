"""The embedded stack: `up`, `down`, `status` over the broker and every part of the system.

Every process the stack starts is a ManagedProcess under <home>/run, named by
its stage id (`flink.rendezvous`, `score.fraud_xgb@3`, ...); `down` stops them
all (the broker last) and `status` lists them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException

from scorestream import access, kafka, secured, security, topics
from scorestream.broker import Cluster, broker_answers
from scorestream.errors import UserError
from scorestream.flink import cluster_url as flink_url
from scorestream.process import ManagedProcess, rss_bytes
from scorestream.settings import StackSettings

JOB_READY_TIMEOUT_S = 180.0
CANARY_PORT_OFFSET = 50       # the canary monitor's /metrics: metrics_port_base + 50 (workers count up from + 2)


@dataclass(frozen=True)
class PartStatus:
    name: str
    state: str        # running | starting | stopped
    pid: int | None
    rss_mb: float
    where: str


@dataclass(frozen=True)
class Part:
    """A process of the system: its stage id, its command line, and the line of its log that says it is up."""

    name: str
    args: tuple[str, ...]
    ready_line: str | None = None
    user: str = ""        # its Kafka user on a secured stack (topics.yaml's access)


def system_parts(settings: StackSettings, policy_path: Path | None = None,
                 restore: dict[str, str] | None = None, flink: str | None = None) -> list[Part]:
    """The Flink jobs, one worker per model the policy names (the canary as canary), the decoy and the canary
    monitor. restore: job -> latest | none | a savepoint directory (default latest: see savepoints.deploy).
    flink: the REST address of a session cluster the jobs are submitted to (else each runs embedded)."""
    from models.registry import list_models
    from rendezvous.policy import DEFAULT_PATH, Policy

    policy_path = policy_path or DEFAULT_PATH
    policy = Policy.load(policy_path, known_models=set(list_models()))
    port = settings.metrics_port_base
    restore = restore or {}
    on = ("--flink", flink) if flink else ()
    parts = [Part("flink.extract", ("job", "extract", "--policy", str(policy_path),
                                    "--restore", restore.get("extract", "latest"), *on), "submitted", "extract"),
             Part("flink.rendezvous", ("job", "rendezvous", "--policy", str(policy_path), "--metrics-port", str(port),
                                       "--restore", restore.get("rendezvous", "latest"), *on), "submitted", "rendezvous"),
             Part("decoy", ("decoy", "--metrics-port", str(port + 1)), user="decoy"),
             Part("canary", ("canary", "--policy", str(policy_path), "--metrics-port", str(port + CANARY_PORT_OFFSET)),
                  "canary monitor running", "canary")]
    for i, ref in enumerate(sorted(policy.models), start=2):
        role = "canary" if ref == policy.canary else "candidate"
        name = f"score.{ref}"
        parts.append(Part(name, ("worker", "--model", ref, "--role", role, "--metrics-port", str(port + i),
                                 "--instance-id", kafka.static_member_id(name)), user="worker"))
    return parts


def flink_cluster(settings: StackSettings) -> str | None:
    """The session cluster the running system's jobs were submitted to (`up --flink`), None: embedded."""
    return settings.state().get("flink")


def up(settings: StackSettings | None = None, broker_only: bool = False, policy_path: Path | None = None,
       restore: dict[str, str] | None = None,
       flink: str | None = None) -> tuple[Cluster, float | None, topics.Plan, list[str]]:
    """Start what is not running. Returns the broker, its seconds to ready (None: was running),
    the topic plan applied and the names of the parts started. A part that exits during start (or a job the
    Flink cluster refuses) stops everything this call started: nothing is left half-started.

    flink: submit the Flink jobs to the session cluster at this REST address (default: the one the running
    system uses, if any). A cluster that does not answer or has no free slots stops us before anything starts."""
    settings = settings or StackSettings()
    if settings.brokers == 2:
        raise UserError("--brokers 2 cannot lose a node (a KRaft quorum needs a majority): use 1, or 3 and more")
    flink = flink_url(flink) if flink else flink_cluster(settings)
    if settings.state().get("secure") and not settings.secure:
        settings = settings.model_copy(update={"secure": True})     # what runs stays secured
    parts = [] if broker_only else system_parts(settings, policy_path, restore, flink)  # a bad policy stops us here
    if flink and not broker_only:
        from savepoints.deploy import check_cluster
        check_cluster(flink, jobs=sum(1 for p in parts if p.name.startswith("flink.")
                                      and ManagedProcess(p.name, settings.home).pid() is None))
    grants = access.load() if settings.secure else []
    passwords = secured.ensure(settings.home, [g.user for g in grants]) if settings.secure else {}
    broker = Cluster(settings)
    seconds = None
    if not broker.running():
        seconds = broker.start()
    settings.state_file.write_text(json.dumps({"bootstrap": broker.bootstrap, "brokers": settings.brokers, "started": time.time()}
                                              | ({"flink": flink} if flink else {})
                                              | ({"secure": True} if settings.secure else {})))
    environment = "cluster" if settings.brokers > 1 else "embedded"
    env = os.environ | {"SCORESTREAM_BOOTSTRAP_SERVERS": broker.bootstrap, "SCORESTREAM_HOME": str(settings.home)}
    started = []
    try:
        registry = topics.TopicRegistry.load(environment=environment)
        plan = topics.apply(kafka.admin(broker.bootstrap), registry)
        if settings.secure:
            access.apply(kafka.admin(broker.bootstrap), grants, registry, passwords)
        for part in parts:
            proc = ManagedProcess(part.name, settings.home)
            if proc.pid() is None:
                proc.log_file.unlink(missing_ok=True)
                own = {"SCORESTREAM_KAFKA_CONFIG": str(secured.properties_file(settings.home, part.user))} \
                    if settings.secure else {}
                proc.start([sys.executable, "-m", "scorestream.cli", *part.args], env=env | own)
                started.append(part)
        _wait_ready(settings, started)
    except (UserError, KafkaException) as exc:
        reason = security.explain(exc.args[0]) if isinstance(exc, KafkaException) else str(exc)
        for part in started:      # nothing half-started: the jobs' processes cancel what they submitted
            ManagedProcess(part.name, settings.home).stop()
        if seconds is not None:
            broker.stop()
            settings.state_file.unlink(missing_ok=True)
        stopped = [p.name for p in started] + (["kafka"] if seconds is not None else [])
        raise UserError(reason + (f"\nstopped what this `up` had started ({', '.join(stopped)})" if stopped else "")
                        ) from None
    return broker, seconds, plan, [p.name for p in started]


def _wait_ready(settings: StackSettings, parts: list[Part]) -> None:
    deadline = time.monotonic() + JOB_READY_TIMEOUT_S
    waiting = list(parts)
    while waiting:
        for part in list(waiting):
            proc = ManagedProcess(part.name, settings.home)
            if proc.pid() is None:
                raise UserError(f"{part.name} exited during start; its log ({proc.log_file}) ends:\n{proc.log_tail()}")
            if part.ready_line is None or part.ready_line in proc.log_tail(200):
                waiting.remove(part)
        if waiting and time.monotonic() > deadline:
            raise UserError(f"not ready after {JOB_READY_TIMEOUT_S:.0f}s: {', '.join(p.name for p in waiting)}; "
                            f"see the logs in {settings.home / 'logs'}")
        time.sleep(0.2)


def processes(settings: StackSettings) -> list[ManagedProcess]:
    run = settings.home / "run"
    names = sorted(p.stem for p in run.glob("*.pid")) if run.exists() else []
    return [ManagedProcess(n, settings.home) for n in names if n != "kafka" and not n.startswith("kafka.")]


def down(settings: StackSettings | None = None) -> list[str]:
    """Stop every process of the stack, the broker last. Returns the names stopped."""
    settings = settings or StackSettings()
    stopped = [p.name for p in processes(settings) if p.stop()]
    stopped += Cluster.found(settings).stop()
    settings.state_file.unlink(missing_ok=True)
    return stopped


def pids(settings: StackSettings | None = None) -> dict[str, int]:
    """The pid of every running part, the broker first (a part's pid leads its process tree)."""
    settings = settings or StackSettings()
    parts = ([(b.name, b.process.pid()) for b in Cluster.found(settings).nodes]
             + [(p.name, p.pid()) for p in processes(settings)])
    return {name: pid for name, pid in parts if pid is not None}


def status(settings: StackSettings | None = None) -> list[PartStatus]:
    settings = settings or StackSettings()
    rows = []
    cluster = Cluster.found(settings)
    active = cluster.active_controller() if len(cluster.nodes) > 1 else None
    for broker in cluster.nodes:
        pid = broker.process.pid()
        answering = pid is not None and broker_answers(broker.bootstrap)
        rows.append(PartStatus(broker.name, "running" if answering else ("starting" if pid else "stopped"), pid,
                               rss_bytes(pid) / 2**20 if pid else 0.0,
                               f"{broker.bootstrap} (data {broker.dir / 'data'})"
                               + (", active controller" if broker.node == active else "")))
    for proc in processes(settings):
        pid = proc.pid()
        rows.append(PartStatus(proc.name, "running" if pid else "stopped", pid,
                               rss_bytes(pid) / 2**20 if pid else 0.0, f"log {proc.log_file}"))
    return rows
