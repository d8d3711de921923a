"""The `scorestream` command: one CLI, verbs by role.

Every option can also be set from the environment: SCORESTREAM_<VERB>_<OPTION>
(shown in --help), plus the shared SCORESTREAM_BOOTSTRAP_SERVERS,
SCORESTREAM_KAFKA_PORT, SCORESTREAM_HOME and SCORESTREAM_TOPIC_PREFIX.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from confluent_kafka import KafkaException
from rich.table import Table

from scorestream import kafka, security, stack, topics
from scorestream.console import err, out, progress
from scorestream.errors import UserError
from scorestream.publish import (DelayedOutcomes, PublishReport, lines_to_outcomes, lines_to_requests, publish,
                                 synthetic_requests)
from scorestream.settings import KafkaSettings, StackSettings
from scorestream.synthetic import fresh_seed
from scorestream.warmup import BUDGET_S as WARM_UP_BUDGET_S


HELP = """scorestream: Kafka-native streaming scoring on the rendezvous architecture.

\b
Everyone:  up, down, status, demo, bench
Producers: publish, results, outcomes
Models:    worker, deploy, undeploy
Ops:       policy, promote, decoy, canary, alerts, topics apply, topics list, savepoint, savepoints, upgrade
Analysts:  replay
"""


@click.group(help=HELP, context_settings={"auto_envvar_prefix": "SCORESTREAM", "show_default": True,
                                          "help_option_names": ["-h", "--help"]})
def cli() -> None:
    pass


def _port_option(f):
    return click.option("--port", type=int, default=None, envvar="SCORESTREAM_KAFKA_PORT", show_envvar=True,
                        help="Broker port on 127.0.0.1 (the KRaft controller uses port + 1). [default: 9092]")(f)


def _stack_settings(port: int | None, brokers: int | None = None, secure: bool | None = None) -> StackSettings:
    given = ({"kafka_port": port} if port else {}) | ({"brokers": brokers} if brokers else {})
    return StackSettings(**given, **({"secure": secure} if secure else {}))


def _policy_option(f):
    return click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        default=None, help="Rendezvous policy file. [default: rendezvous/policy.yaml]")(f)


@cli.command()
@_port_option
@_policy_option
@click.option("--broker-only", is_flag=True, help="Only the Kafka broker and the topics.")
@click.option("--brokers", type=click.IntRange(1, 5), default=None, envvar="SCORESTREAM_BROKERS", show_envvar=True,
              help="Kafka nodes: 1, or a local cluster of 3 (each broker and controller, on port, port + 2, ...; "
                   "topics with replication 3, min.insync.replicas 2: it loses a node without losing a record). "
                   "[default: 1]")
@click.option("--secure", is_flag=True, default=None, envvar="SCORESTREAM_SECURE", show_envvar=True,
              help="Kafka on SASL_SSL only (SCRAM-SHA-512 over TLS), with a user and least-privilege ACLs per part "
                   "(topics.yaml's access); a CA, certificates and passwords are made under <home>/secrets. "
                   "A home's broker stays what it was made: secured or not (docs/operations.md).")
@click.option("--restore", "restores", multiple=True, metavar="JOB=PATH",
              help="Start JOB (extract, rendezvous) from this savepoint instead of its newest restore point.")
@click.option("--fresh", is_flag=True, help="Start the Flink jobs without any saved state (from committed offsets).")
@click.option("--flink", "flink_url", default=None, metavar="URL",
              help="Submit the Flink jobs to the session cluster at this REST address (e.g. http://127.0.0.1:8081) "
                   "instead of running each in its own process. [default: the cluster the running system uses, "
                   "else embedded]")
@click.option("--warm-up", type=float, default=WARM_UP_BUDGET_S, show_envvar=True,
              help="At most this many seconds of synthetic warm-up traffic after starting a Flink job or a worker "
                   "(0: none).")
@click.option("--warm-up-rate", type=float, default=200.0, show_envvar=True, help="Requests per second of the warm-up traffic.")
def up(port: int | None, policy_path: Path | None, broker_only: bool, brokers: int | None, secure: bool | None,
       restores: tuple[str, ...], fresh: bool, flink_url: str | None, warm_up: float, warm_up_rate: float) -> None:
    """Start the embedded system; returns when every part runs and answers steadily. Harmless when running.

    A Kafka broker (KRaft) on 127.0.0.1, the topics of topics.yaml, the Flink
    extract and rendezvous jobs, the decoy, and one worker per model the
    policy names (the canary among them). With --flink URL the two Flink jobs
    go to that session cluster (its settings: docs/savepoints.md); `down`
    stops them there with a savepoint and leaves the cluster running.

    Fresh JVMs answer late for their first minutes (JIT): when it started a Flink
    job or a worker, `up` sends synthetic traffic until the preferred model
    answers and the answers come steadily within the SLA, so that users' first
    requests do not pay for the start (scorestream/warmup.py).

    A Flink job that is not running starts from its newest savepoint or retained
    checkpoint under <home>/savepoints/<job>/ (after a crash: nothing lost, nothing
    answered twice; see docs/savepoints.md).
    """
    restore = {"extract": "none", "rendezvous": "none"} if fresh else {}
    for item in restores:
        job_name, sep, path = item.partition("=")
        if not sep or job_name not in ("extract", "rendezvous"):
            raise UserError(f"--restore {item!r}: give JOB=PATH with JOB extract or rendezvous")
        restore[job_name] = path
    bring_up(_stack_settings(port, brokers, secure), policy_path, broker_only, restore, flink_url, warm_up, warm_up_rate)


def bring_up(settings: StackSettings, policy_path: Path | None = None, broker_only: bool = False,
             restore: dict[str, str] | None = None, flink: str | None = None, warm_up_s: float = WARM_UP_BUDGET_S,
             warm_up_rate: float = 200.0):
    """`up`; returns the broker and whether it warmed the system up."""
    with err.status("starting the embedded system (Flink jobs take ~30 s) ..."):
        broker, seconds, plan, started = stack.up(settings, broker_only, policy_path, restore, flink)
    if seconds is None:
        out.print(f"kafka already running on {broker.bootstrap}")
    else:
        out.print(f"kafka ready on {broker.bootstrap} in {seconds:.1f}s (log {broker.process.log_file})")
    for line in plan.lines():
        out.print(f"topics: {line}")
    if started:
        out.print(f"started: {', '.join(started)}")
    cold = any(name.startswith(("flink.", "score.")) for name in started)
    if cold and warm_up_s > 0:
        jvm = any(name.startswith("flink.") for name in started)
        warm_up_system(broker.bootstrap, policy_path, warm_up_rate, warm_up_s, jvm)
    return broker, cold and warm_up_s > 0


def warm_up_system(bootstrap: str, policy_path: Path | None, rate: float, budget_s: float, jvm: bool = False) -> None:
    """The one warm-up (scorestream/warmup.py), with its progress on stderr and its outcome on stdout; jvm: a Flink
    job's JVM was started, so it lasts at least warmup.JVM_MIN_S."""
    from rendezvous.policy import DEFAULT_PATH, Policy
    from scorestream import warmup

    sla_ms = Policy.load(policy_path or DEFAULT_PATH).sla_ms
    with err.status(f"warming up: the first answers from the models, then {rate:g} requests/s ...") as shown:
        done = warmup.warm_up(bootstrap, sla_ms, rate, budget_s, on_round=lambda n, within: shown.update(
            f"warming up at {rate:g} requests/s: round {n}, {within:.2%} within the SLA ..."),
            min_s=warmup.JVM_MIN_S if jvm else 0.0)
    out.print(done.line())


@cli.command()
def down() -> None:
    """Stop everything `up` started. Harmless when nothing runs."""
    stopped = stack.down()
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@cli.command()
def status() -> None:
    """What runs, where, its pid and resident memory."""
    table = Table("part", "state", "pid", "RSS MiB", "where")
    rows = stack.status()
    for row in rows:
        table.add_row(row.name, row.state, str(row.pid or "-"), f"{row.rss_mb:,.0f}", row.where)
    table.add_row("total", "", "", f"{sum(r.rss_mb for r in rows):,.0f}", "")
    out.print(table)
    from savepoints.cli import job_rows
    jobs = job_rows(StackSettings().home)
    if jobs:
        flink_table = Table("Flink job", "job id", "state", "last checkpoint", "code version", "REST")
        for row in jobs:
            flink_table.add_row(*row)
        out.print(flink_table)
    _print_containers()
    if rows[0].state == "running":
        _print_firing()


def _print_containers() -> None:
    """scorestream's containers on the Docker engine, when one answers (deployed workers, the compose system)."""
    from scorestream import containers

    client = containers.engine()
    if client is not None and (found := containers.rows(client)):
        table = Table("container", "state", "model", "image")
        for row in found:
            table.add_row(row.name, row.state, row.model or "-", row.image)
        out.print(table)


def _print_firing() -> None:
    """The canary monitor's alerts that fire now (latest record per alert and model)."""
    from canary.alerts import firing_now

    try:
        firing = firing_now(topics.TopicRegistry.load().name("alerts"))
    except Exception as exc:          # status must print even when the alerts cannot be read
        err.print(f"alerts: not readable ({exc})")
        return
    if not firing:
        out.print("alerts: none firing")
        return
    for a in firing:          # one plain line each: a table would cut names and links on a narrow terminal
        since = time.strftime("%H:%M:%S", time.gmtime(a.first_seen / 1000)) if a.first_seen else "-"
        out.print(f"alert firing: {a.alert} {a.model} {a.value:g} (threshold {a.threshold:g}) since {since} UTC, "
                  f"{a.severity}: {a.reason}; see {a.runbook}", highlight=False, soft_wrap=True)


@cli.group("topics")
def topics_group() -> None:
    """Topics as code: topics.yaml is the truth."""


@topics_group.command("apply")
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Topic file. [default: topics.yaml of the repo]")
def topics_apply(dry_run: bool, path: Path | None) -> None:
    """Create missing topics and align their configs; refuse what Kafka cannot do."""
    registry = topics.TopicRegistry.load(path)
    admin = kafka.admin()
    todo = topics.plan(admin, registry) if dry_run else topics.apply(admin, registry)
    if todo.refused:
        raise UserError("refused, nothing would change:\n  " + "\n  ".join(todo.refused))
    for line in todo.lines():
        out.print(("would " if dry_run and not todo.empty else "") + line)


@topics_group.command("list")
def topics_list() -> None:
    """Every topic of topics.yaml and its purpose."""
    table = Table("id", "name", "partitions", "config", "purpose")
    for t in topics.TopicRegistry.load():
        table.add_row(t.id, t.name, str(t.partitions), " ".join(f"{k}={v}" for k, v in t.config.items()), t.purpose)
    out.print(table)


@cli.command("publish")
@click.argument("source", type=click.File("rb"), required=False)
@click.option("--synthetic", is_flag=True, help="Generate transaction-like requests instead of reading SOURCE.")
@click.option("--count", type=int, default=10_000, help="How many synthetic requests.")
@click.option("--rate", type=float, default=0.0, help="Requests per second; 0 = as fast as possible.")
@click.option("--seed", type=int, default=None, help="Seed of the synthetic generator. [default: random]")
@click.option("--regime", type=click.Choice(["old", "new"]), default="old",
              help="Ground truth of the synthetic world: new = evening travel turned risky (scorestream/synthetic.py).")
@click.option("--outcomes-after-ms", type=float, default=None,
              help="Also publish each synthetic request's true label to scoring.outcomes this many ms later.")
@click.option("--topic", default="requests", help="Topic id in topics.yaml (or a topic name).")
def publish_cmd(source, synthetic: bool, count: int, rate: float, seed: int | None, regime: str,
                outcomes_after_ms: float | None, topic: str) -> None:
    """Publish scoring requests from SOURCE (JSON lines; - for stdin) or --synthetic.

    A line is a request {"request_id", "ts", "payload"} or a bare payload object;
    request_id and ts are filled in when absent. Bad lines are reported with their
    number and not sent. With --synthetic --outcomes-after-ms D, each request's
    ground-truth label follows it D ms later on scoring.outcomes.
    """
    if synthetic == (source is not None):
        raise UserError("give either a SOURCE file (- for stdin) or --synthetic")
    if outcomes_after_ms is not None and not synthetic:
        raise UserError("--outcomes-after-ms needs --synthetic (a file has no labels: use `scorestream outcomes`)")
    name = _topic_name(topic)
    report = PublishReport()
    if synthetic:
        seed = fresh_seed() if seed is None else seed
        delayed = None if outcomes_after_ms is None else DelayedOutcomes(_topic_name("outcomes"), outcomes_after_ms)
        requests = synthetic_requests(seed, count, regime, labels=delayed.labels if delayed else None)
        with progress(count, "publishing") as advance:
            publish(requests, name, rate, report=report, on_progress=advance, outcomes=delayed)
        out.print(f"seed {seed}, regime {regime}" + (f", outcomes {report.outcomes}" if delayed else ""))
    else:
        publish(lines_to_requests(source, report), name, rate, report=report)
    _report_sent(report, name)


@cli.command("outcomes")
@click.argument("source", type=click.File("rb"))
def outcomes_cmd(source) -> None:
    """Publish outcomes (true labels) from SOURCE (JSON lines; - for stdin) to scoring.outcomes.

    A line is {"request_id": "...", "label": 0 or 1, "ts": epoch ms}; ts is
    filled in when absent. The rendezvous joins each with every model's score
    of that request (within the policy's outcome_horizon_s) and rewards every
    model. Bad lines are reported with their number and not sent.
    """
    name = _topic_name("outcomes")
    report = PublishReport()
    publish(lines_to_outcomes(source, report), name, report=report)
    _report_sent(report, name)


def _report_sent(report: PublishReport, name: str) -> None:
    for number, reason in report.bad_lines[:20]:
        err.print(f"line {number}: {reason}")
    if len(report.bad_lines) > 20:
        err.print(f"... and {len(report.bad_lines) - 20} more bad lines")
    out.print(f"delivered {report.delivered}, failed {report.failed}, bad lines {len(report.bad_lines)} "
              f"to {name} in {report.seconds:.2f}s ({report.rate:,.0f}/s)")
    for e in report.errors:
        err.print(f"delivery error: {e}")
    if report.failed or report.bad_lines:
        sys.exit(1)


@cli.command("job", hidden=True)
@click.argument("name", type=click.Choice(["extract", "rendezvous"]))
@_policy_option
@click.option("--metrics-port", type=int, default=0, help="Serve the job's /metrics here; 0: off.")
@click.option("--restore", default="latest", show_default=True,
              help="latest: the newest savepoint or retained checkpoint, if any; none; or a savepoint directory.")
@click.option("--deployment-id", default=None, help="This start's deployment id. [default: a new one]")
@click.option("--takes-over-from", "predecessor", default=None, metavar="DEPLOYMENT",
              help="Hot swap: answer only what comes after DEPLOYMENT's swap token (see `scorestream upgrade`).")
@click.option("--flink", "cluster", default=None, metavar="URL",
              help="Submit the job to the session cluster at this REST address and follow it there.")
def job(name: str, policy_path: Path | None, metrics_port: int, restore: str, deployment_id: str | None,
        predecessor: str | None, cluster: str | None) -> None:
    """Run a Flink job of the stack in a local mini cluster (what `up` starts), operable through its REST API;
    with --flink, on a session cluster instead (this process follows it: SIGTERM stops it with a savepoint)."""
    from rendezvous.policy import DEFAULT_PATH, Policy
    from savepoints import deploy
    from models.registry import list_models

    policy = Policy.load(policy_path or DEFAULT_PATH, known_models=set(list_models()))
    registry = topics.TopicRegistry.load()
    bootstrap = KafkaSettings().bootstrap()
    if name == "extract":
        from extractors.job import build
        deploy.run("extract", lambda env, answered, by: build(env, registry, bootstrap, policy.extractor, by,
                                                              predecessor), restore, deployment_id, predecessor,
                   cluster)
    else:
        from rendezvous.job import build
        deploy.run("rendezvous", lambda env, answered, by: build(env, registry, bootstrap, policy, metrics_port,
                                                                 answered_before=answered, answered_by=by,
                                                                 predecessor=predecessor),
                   restore, deployment_id, predecessor, cluster)


def _topic_name(topic: str) -> str:
    registry = topics.TopicRegistry.load()
    return registry.name(topic) if topic in registry.topics else topic


def _add_parts() -> None:
    """Verbs of the parts outside the core, each in its own folder."""
    from canary.cli import alerts_cmd, canary_cmd
    from decoy.cli import decoy_cmd, replay_cmd
    from models.cli import deploy, undeploy, worker
    from rendezvous.cli import policy_cmd, promote, results
    from savepoints.cli import savepoint_cmd, savepoints_cmd, upgrade_cmd
    from scorestream.demo import bench, demo

    for command in (worker, deploy, undeploy, policy_cmd, promote, results, demo, bench, decoy_cmd, replay_cmd,
                    canary_cmd, alerts_cmd, savepoints_cmd, savepoint_cmd, upgrade_cmd):
        cli.add_command(command)


_add_parts()


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except UserError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)
    except KafkaException as exc:     # what Kafka refused or could not do, said without a traceback
        err.print(f"[red]error:[/red] {security.explain(exc.args[0])}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
