"""The `scorestream` command: one CLI, verbs by role.

Every option can also be set from the environment: SCORESTREAM_<VERB>_<OPTION>
(shown in --help), plus the shared SCORESTREAM_BOOTSTRAP_SERVERS,
SCORESTREAM_KAFKA_PORT, SCORESTREAM_HOME and SCORESTREAM_TOPIC_PREFIX.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from scorestream import kafka, stack, topics
from scorestream.errors import UserError
from scorestream.publish import PublishReport, lines_to_requests, publish, synthetic_requests
from scorestream.readback import end_offsets, read_keys
from scorestream.settings import StackSettings

out = Console()
err = Console(stderr=True)

HELP = """scorestream: Kafka-native streaming scoring on the rendezvous architecture.

\b
Everyone:  up, down, status, demo
Producers: publish
Models:    worker
Ops:       topics apply, decoy
Analysts:  replay
"""


@click.group(help=HELP, context_settings={"auto_envvar_prefix": "SCORESTREAM", "show_default": True,
                                          "help_option_names": ["-h", "--help"]})
def cli() -> None:
    pass


def _port_option(f):
    return click.option("--port", type=int, default=None, envvar="SCORESTREAM_KAFKA_PORT", show_envvar=True,
                        help="Broker port on 127.0.0.1 (the KRaft controller uses port + 1). [default: 9092]")(f)


def _stack_settings(port: int | None) -> StackSettings:
    return StackSettings(kafka_port=port) if port else StackSettings()


@cli.command()
@_port_option
def up(port: int | None) -> None:
    """Start the embedded system: a Kafka broker (KRaft) and the topics of topics.yaml."""
    settings = _stack_settings(port)
    with err.status("starting the Kafka broker ..."):
        broker, seconds, plan = stack.up(settings)
    if seconds is None:
        out.print(f"kafka already running on {broker.bootstrap}")
    else:
        out.print(f"kafka ready on {broker.bootstrap} in {seconds:.1f}s (log {broker.process.log_file})")
    for line in plan.lines():
        out.print(f"topics: {line}")


@cli.command()
def down() -> None:
    """Stop everything `up` started. Harmless when nothing runs."""
    stopped = stack.down()
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@cli.command()
def status() -> None:
    """What runs, where, and its pid."""
    table = Table("part", "state", "pid", "where")
    for row in stack.status():
        table.add_row(row.name, row.state, str(row.pid or "-"), row.where)
    out.print(table)


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
@click.option("--topic", default="requests", help="Topic id in topics.yaml (or a topic name).")
def publish_cmd(source, synthetic: bool, count: int, rate: float, seed: int | None, topic: str) -> None:
    """Publish scoring requests from SOURCE (JSON lines; - for stdin) or --synthetic.

    A line is a request {"request_id", "ts", "payload"} or a bare payload object;
    request_id and ts are filled in when absent. Bad lines are reported with their
    number and not sent.
    """
    if synthetic == (source is not None):
        raise UserError("give either a SOURCE file (- for stdin) or --synthetic")
    name = _topic_name(topic)
    report = PublishReport()
    if synthetic:
        seed = random.randrange(2**31) if seed is None else seed
        requests = synthetic_requests(seed, count)
        with _progress(count, "publishing") as advance:
            publish(requests, name, rate, report=report, on_progress=advance)
        out.print(f"seed {seed}")
    else:
        publish(lines_to_requests(source, report), name, rate, report=report)
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


@cli.command()
@_port_option
@click.option("--count", type=int, default=20_000, help="Synthetic requests to publish.")
@click.option("--rate", type=float, default=0.0, help="Requests per second; 0 = as fast as possible.")
def demo(port: int | None, count: int, rate: float) -> None:
    """Bring the system up, publish synthetic requests, and read them back."""
    settings = _stack_settings(port)
    with err.status("starting the embedded system ..."):
        broker, seconds, _ = stack.up(settings)
    out.print(f"kafka on {broker.bootstrap}" + (f", ready in {seconds:.1f}s" if seconds else " (already running)"))
    name = topics.TopicRegistry.load().name("requests")
    before = end_offsets(name, broker.bootstrap)
    requests = list(synthetic_requests(seed=42 + int.from_bytes(os.urandom(2)), count=count))
    with _progress(count, "publishing") as advance:
        report = publish(requests, name, rate, bootstrap=broker.bootstrap, on_progress=advance)
    arrived = set(read_keys(name, before, broker.bootstrap))
    ours = sum(1 for r in requests if r.key in arrived)
    table = Table("published", "acknowledged", "failed", "read back from " + name, "rate")
    table.add_row(str(count), str(report.delivered), str(report.failed), str(ours), f"{report.rate:,.0f}/s")
    out.print(table)
    out.print("the broker keeps running: `scorestream status`, `scorestream down`")
    if ours != count:
        raise UserError(f"{count - ours} requests did not arrive")


def _topic_name(topic: str) -> str:
    registry = topics.TopicRegistry.load()
    return registry.name(topic) if topic in registry.topics else topic


class _progress:
    """A progress bar on stderr when it is a terminal; a no-op otherwise."""

    def __init__(self, total: int, what: str):
        self.bar = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=err, disable=not err.is_terminal)
        self.task = self.bar.add_task(what, total=total)

    def __enter__(self):
        self.bar.start()
        return lambda done: self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        self.bar.update(self.task, completed=self.bar.tasks[0].total)
        self.bar.stop()


def _add_parts() -> None:
    """Verbs of the parts outside the core, each in its own folder (imported here: they use this module)."""
    from decoy.cli import decoy_cmd, replay_cmd
    from models.cli import worker

    cli.add_command(worker)
    cli.add_command(decoy_cmd)
    cli.add_command(replay_cmd)


_add_parts()


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except UserError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
