"""`scorestream demo` and `scorestream bench`: the whole system under a steady synthetic load."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import click
from rich.table import Table

from scorestream import costs, warmup
from scorestream.bench import floor
from scorestream.console import err, out, progress
from scorestream.errors import UserError
from scorestream.load import LoadReport, run_load
from scorestream.process import describe_speeds, host_speed
from scorestream.settings import StackSettings
from scorestream.topics import TopicRegistry


def system_up(policy_path: Path | None, rate: float, warm_anyway: bool, running: str | None = None):
    """`up` (which warms a started system up at `rate`), or the system already running at bootstrap `running`;
    warm_anyway: warm a system up that was running already too. Returns its bootstrap and the policy."""
    from rendezvous.policy import DEFAULT_PATH, Policy
    from scorestream.cli import bring_up, warm_up_system

    warmed = False
    if running is None:
        broker, warmed = bring_up(StackSettings(), policy_path, warm_up_rate=rate)
    bootstrap = running or broker.bootstrap
    if warm_anyway and not warmed:
        warm_up_system(bootstrap, policy_path, rate, warmup.BUDGET_S)
    return bootstrap, Policy.load(policy_path or DEFAULT_PATH)


def load_with_progress(bootstrap: str, rate: float, duration_s: float, sla_ms: float, bad_share: float = 0.0,
                       **hooks) -> LoadReport:
    registry = TopicRegistry.load()
    with progress(int(rate * duration_s), f"{rate:g} requests/s for {duration_s:g}s") as advance:
        return run_load(registry.name("requests"), registry.name("results"), rate, duration_s, sla_ms, bootstrap,
                        on_progress=advance, bad_share=bad_share, **hooks)


def _measured_load(bootstrap: str, rate: float, duration_s: float, sla_ms: float, bad_share: float,
                   idle_s: float) -> tuple[LoadReport, costs.CostModel]:
    """The load, with the cost model of every part: idle_s without traffic first, then the counted traffic."""
    time.sleep(1.0)                                   # the warm-up's last answers and fetches settle
    with err.status(f"the idle cost: {idle_s:g}s without traffic ..."):
        before = costs.sample()
        time.sleep(idle_s)
        idle = (before, costs.sample())
    marks: list[costs.Sample] = []
    report = load_with_progress(bootstrap, rate, duration_s, sla_ms, bad_share, on_counted=lambda: marks.append(costs.sample()),
                   on_answered=lambda: marks.append(costs.sample()))
    return report, costs.CostModel(idle, (marks[0], marks[1]), report.published)


def summary_table(report: LoadReport, title: str) -> Table:
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


KEEPS_RUNNING = "the system keeps running: `scorestream status`, `scorestream results`, `scorestream down`"


@click.command()
@click.option("--rate", type=float, default=200.0, help="Requests per second.")
@click.option("--duration", type=float, default=30.0, help="Seconds of traffic.")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Rendezvous policy file. [default: rendezvous/policy.yaml]")
def demo(rate: float, duration: float, policy_path: Path | None) -> None:
    """Bring the whole system up, send steady synthetic traffic, and summarise the answers."""
    bootstrap, policy = system_up(policy_path, rate, warm_anyway=False)
    report = load_with_progress(bootstrap, rate, duration, policy.sla_ms)
    out.print(summary_table(report, "scorestream demo"))
    out.print(KEEPS_RUNNING)
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
@click.option("--idle", "idle_s", type=float, default=5.0,
              help="Seconds without traffic before the load, for the idle cost of every part.")
def bench(rate: float, duration: float, policy_path: Path | None, skip_floor: bool, running: str | None,
          bad_share: float, idle_s: float) -> None:
    """Publish->answer latency of the system at a fixed offered rate, beside the bare-Kafka floor, and the cost
    model of every part.

    The floor runs the same load through the same number of Kafka hops with
    trivial forwarders, in the same run, so the ratio shows what the
    architecture adds. The cost model (the embedded system only): per part
    (broker, each Flink job, decoy, each worker, canary monitor), CPU ms per
    1,000 requests over the measured interval (all it spent, and above its idle
    cost), CPU ms per second idle (over --idle seconds before the load) and
    resident memory, from the processes' own counters (/proc).
    """
    speeds = host_speed()         # before our own system takes the cores (unless it already runs)
    bootstrap, policy = system_up(policy_path, rate, warm_anyway=True, running=running)
    if running:
        system = load_with_progress(bootstrap, rate, duration, policy.sla_ms, bad_share)
        out.print(summary_table(system, f"system at {rate:g}/s"))
    else:
        system, cost = _measured_load(bootstrap, rate, duration, policy.sla_ms, bad_share, idle_s)
        out.print(summary_table(system, f"system at {rate:g}/s"))
        out.print(cost.table(f"cost model at {rate:g}/s"))
    if not skip_floor:
        with err.status("the bare-Kafka floor ..."):
            bare = floor(rate, duration, policy.sla_ms, bootstrap)
        out.print(summary_table(bare, f"bare Kafka hops at {rate:g}/s"))
        out.print(f"p50 ratio system/floor {system.percentile(50) / bare.percentile(50):.2f}, "
                  f"p99 ratio {system.percentile(99) / bare.percentile(99):.2f}")
    out.print(f"host: {os.cpu_count()} CPUs at {describe_speeds(speeds)} before the run (docs/benchmarks.md: compare "
              f"figures taken at like speeds)")
    if not running:
        out.print(KEEPS_RUNNING)
