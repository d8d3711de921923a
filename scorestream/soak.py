"""The soak: the whole system at a steady rate for a long run; does anything grow?

    python -m scorestream.soak --rate 300 --minutes 30

Starts the embedded system (or measures the one behind --system), publishes at --rate for --minutes, and
every --every seconds samples the resident memory of every part and the rendezvous's live-request gauge (the
requests it holds in keyed state). Reports answered, lost and answered twice, the latency summary, and each
part's memory at the start, once steady (after the first quarter: JVM heaps and
caches fill first) and at the end. Exits non-zero when a request was lost or answered twice, or when a part's
memory grew from steady to the end by more than --growth (a leak, not noise).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click
from rich.table import Table

from scorestream import costs
from scorestream.console import out
from scorestream.demo import load_with_progress, summary_table, system_up
from scorestream.metrics import read_metric
from scorestream.settings import StackSettings

LIVE_REQUESTS = "scorestream_rendezvous_live_requests"


@dataclass(frozen=True)
class Mark:
    minute: float
    rss_mb: dict[str, float]
    live_requests: float | None


def live_requests(port: int) -> float | None:
    """The rendezvous's gauge of requests in keyed state, or None when its /metrics does not answer."""
    try:
        return read_metric(f"http://127.0.0.1:{port}/metrics", LIVE_REQUESTS, timeout_s=2)
    except OSError:
        return None


def growth(first: float, last: float) -> float:
    return (last - first) / first if first else 0.0


def memory_table(marks: list[Mark], limit: float) -> tuple[Table, list[str]]:
    """Each part's memory at the start, once steady and at the end; the parts that grew by more than limit."""
    start, steady, end = marks[0], marks[len(marks) // 4], marks[-1]
    table = Table(title="resident memory (MiB)")
    for column in ("part", f"start ({start.minute:.0f} min)", f"steady ({steady.minute:.0f} min)",
                   f"end ({end.minute:.0f} min)", "steady→end"):
        table.add_column(column, justify="left" if column == "part" else "right", no_wrap=column == "part")
    grown = []
    for part in sorted(end.rss_mb):
        if part == costs.LOAD_GENERATOR or part not in steady.rss_mb:
            continue
        change = growth(steady.rss_mb[part], end.rss_mb[part])
        if change > limit:
            grown.append(f"{part} +{change:.0%}")
        table.add_row(part, f"{start.rss_mb.get(part, 0):,.0f}", f"{steady.rss_mb[part]:,.0f}",
                      f"{end.rss_mb[part]:,.0f}", f"{change:+.1%}", style="red" if change > limit else None)
    live = " → ".join("?" if m.live_requests is None else f"{m.live_requests:,.0f}" for m in (start, steady, end))
    table.caption = f"live requests in the rendezvous (start → steady → end): {live}"
    return table, grown


@click.command()
@click.option("--rate", type=float, default=300.0, show_default=True, help="Offered requests per second.")
@click.option("--minutes", type=float, default=30.0, show_default=True, help="Length of the run.")
@click.option("--every", "every_s", type=float, default=60.0, show_default=True,
              help="Seconds between memory samples.")
@click.option("--growth", "limit", type=float, default=0.10, show_default=True,
              help="Largest share a part's memory may grow from steady to the end.")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Rendezvous policy file. [default: rendezvous/policy.yaml]")
@click.option("--system", "running", metavar="BOOTSTRAP", default=None,
              help="Soak the system already running behind this broker instead of starting the embedded one "
                   "(memory is read from this host's processes of the embedded system only).")
def main(rate: float, minutes: float, every_s: float, limit: float, policy_path: Path | None,
         running: str | None) -> None:
    """The whole system at a steady rate for a long run: answered, lost and answered twice, and each part's
    resident memory at the start, once steady and at the end (exit 1 when anything was lost, doubled or grew)."""
    bootstrap, policy = system_up(policy_path, rate, warm_anyway=True, running=running)
    port = StackSettings().metrics_port_base
    marks: list[Mark] = []
    t0 = time.monotonic()
    done = threading.Event()

    def sample() -> None:
        marks.append(Mark((time.monotonic() - t0) / 60, costs.sample().rss_mb, live_requests(port)))

    def sampler() -> None:
        while not done.wait(every_s):
            sample()

    sample()
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        report = load_with_progress(bootstrap, rate, minutes * 60, policy.sla_ms, on_answered=sample)
    finally:
        done.set()
        thread.join()
    out.print(summary_table(report, f"soak: {rate:g}/s for {minutes:g} min"))
    lost = report.published - report.answered
    out.print(f"published {report.published:,}, answered {report.answered:,}, lost {lost:,}, "
              f"answered twice {report.duplicates:,}")
    table, grown = memory_table(marks, limit)
    out.print(table)
    if lost or report.duplicates or grown:
        out.print(f"[red]soak failed:[/] lost {lost}, answered twice {report.duplicates}, "
                  f"memory grew: {', '.join(grown) or 'no'}")
        sys.exit(1)


if __name__ == "__main__":
    main()
