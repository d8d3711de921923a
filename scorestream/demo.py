"""`scorestream demo` and `scorestream bench`: the whole system under a steady synthetic load."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click
from confluent_kafka import KafkaException
from rich.table import Table

from scorestream import stack
from scorestream.bench import floor
from scorestream.client import ScoringClient
from scorestream.console import err, out, progress
from scorestream.errors import UserError
from scorestream.load import LoadReport, run_load, warm_up
from scorestream.settings import StackSettings
from scorestream.synthetic import TransactionGenerator
from scorestream.topics import TopicRegistry

WARM_UP_TIMEOUT_S = 180.0
STEADY_ROUNDS = 20          # at most this many 3-second rounds of warm-up traffic


def _system_up(policy_path: Path | None, rate: float, running: str | None = None):
    """The embedded system brought up, or the one already running at bootstrap `running`; then warmed up."""
    from rendezvous.policy import DEFAULT_PATH, Policy
    from scorestream.cli import bring_up

    bootstrap = running or bring_up(StackSettings(), policy_path).bootstrap
    policy = Policy.load(policy_path or DEFAULT_PATH)
    _first_answer(bootstrap, policy.sla_ms)
    _steady(bootstrap, rate, policy.sla_ms)
    return bootstrap, policy


def _steady(bootstrap: str, rate: float, sla_ms: float) -> None:
    registry = TopicRegistry.load()
    with err.status("warming up (the Flink jobs are slow for their first seconds) ..."):
        if warm_up(registry.name("requests"), registry.name("results"), rate, sla_ms, bootstrap, STEADY_ROUNDS):
            return
    err.print(f"still not steady after {STEADY_ROUNDS} rounds of warm-up traffic; measuring anyway")


def _first_answer(bootstrap: str, sla_ms: float) -> None:
    """Until the preferred path answers: the workers have joined their groups, the jobs read."""
    began = time.monotonic()
    payloads = iter(TransactionGenerator(0))
    try:
        client = ScoringClient(bootstrap)
    except KafkaException as exc:
        raise UserError(f"no Kafka broker answers at {bootstrap} ({exc.args[0].str()}): is the system up?") from exc
    with err.status("waiting for the first answers from the models ..."), client:
        while time.monotonic() - began < WARM_UP_TIMEOUT_S:
            try:
                if client.score(next(payloads).payload, timeout=max(1.0, sla_ms / 100)).rule == "preferred":
                    return
            except TimeoutError:
                pass
    raise UserError(f"no answer from the preferred model after {WARM_UP_TIMEOUT_S:.0f}s: `scorestream status` "
                    "and the logs under .scorestream/logs say which part is missing")


def _load(bootstrap: str, rate: float, duration_s: float, sla_ms: float, bad_share: float = 0.0) -> LoadReport:
    registry = TopicRegistry.load()
    with progress(int(rate * duration_s), f"{rate:g} requests/s for {duration_s:g}s") as advance:
        return run_load(registry.name("requests"), registry.name("results"), rate, duration_s, sla_ms, bootstrap,
                        seed=int(time.time()), on_progress=advance, bad_share=bad_share)


def _summary(report: LoadReport, title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_row("published", f"{report.published:,} at {report.achieved_rate:,.0f}/s")
    table.add_row("answered", f"{report.answered:,} ({report.answered / max(report.published, 1):.2%}),"
                              f" duplicates {report.duplicates}")
    table.add_row(f"within SLA ({report.sla_ms:g} ms)", f"{report.within_sla:.2%}")
    table.add_row("latency p50 / p99", f"{report.percentile(50):.1f} ms / {report.percentile(99):.1f} ms")
    for what, counts in (("by model", report.by_model), ("by rule", report.by_rule)):
        total = sum(counts.values()) or 1
        table.add_row(what, ", ".join(f"{k} {v / total:.1%}" for k, v in counts.most_common()))
    if report.rejections:
        table.add_row("rejected (stage field)", ", ".join(f"{k} {v:,}" for k, v in report.rejections.most_common()))
        table.add_row("rejected: latency p50 / p99",
                      f"{report.percentile(50, rejected=True):.1f} ms / {report.percentile(99, rejected=True):.1f} ms")
    if report.canary_deltas:
        d = report.canary_deltas
        table.add_row("canary delta", f"mean {statistics.fmean(d):+.4f}, mean |delta| "
                                      f"{statistics.fmean(abs(x) for x in d):.4f}, max |delta| {max(map(abs, d)):.4f}")
    return table


@click.command()
@click.option("--rate", type=float, default=200.0, help="Requests per second.")
@click.option("--duration", type=float, default=30.0, help="Seconds of traffic.")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Rendezvous policy file. [default: rendezvous/policy.yaml]")
def demo(rate: float, duration: float, policy_path: Path | None) -> None:
    """Bring the whole system up, send steady synthetic traffic, and summarise the answers."""
    bootstrap, policy = _system_up(policy_path, rate)
    report = _load(bootstrap, rate, duration, policy.sla_ms)
    out.print(_summary(report, "scorestream demo"))
    out.print("the system keeps running: `scorestream status`, `scorestream results`, `scorestream down`")
    if report.answered < report.published:
        raise UserError(f"{report.published - report.answered} requests got no answer")


@click.command()
@click.option("--rate", type=float, default=500.0, help="Offered requests per second.")
@click.option("--duration", type=float, default=30.0, help="Seconds of traffic, for the system and for the floor.")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Rendezvous policy file. [default: rendezvous/policy.yaml]")
@click.option("--skip-floor", is_flag=True, help="Only the system, not the bare-Kafka floor.")
@click.option("--system", "running", metavar="BOOTSTRAP", default=None,
              help="Measure the system already running behind this broker (e.g. the compose system, "
                   "127.0.0.1:9092) instead of starting the embedded one; --policy must name its policy's SLA.")
@click.option("--bad-share", type=click.FloatRange(0, 0.5), default=0.0,
              help="Share of requests with a payload the extractor refuses; their rejection latency is shown apart.")
def bench(rate: float, duration: float, policy_path: Path | None, skip_floor: bool, running: str | None,
          bad_share: float) -> None:
    """Publish->answer latency of the system at a fixed offered rate, beside the bare-Kafka floor.

    The floor runs the same load through the same number of Kafka hops with
    trivial forwarders, in the same run, so the ratio shows what the
    architecture adds. Also prints the resident memory of the embedded system.
    """
    bootstrap, policy = _system_up(policy_path, rate, running)
    system = _load(bootstrap, rate, duration, policy.sla_ms, bad_share)
    out.print(_summary(system, f"system at {rate:g}/s"))
    if not running:
        rss = sum(row.rss_mb for row in stack.status())
        out.print(f"resident memory of the embedded system: {rss:,.0f} MiB")
    if not skip_floor:
        with err.status("the bare-Kafka floor ..."):
            bare = floor(rate, duration, policy.sla_ms, bootstrap)
        out.print(_summary(bare, f"bare Kafka hops at {rate:g}/s"))
        out.print(f"p50 ratio system/floor {system.percentile(50) / bare.percentile(50):.2f}, "
                  f"p99 ratio {system.percentile(99) / bare.percentile(99):.2f}")
