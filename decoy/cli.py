"""The CLI verbs of this part: `scorestream decoy` (ops) and `scorestream replay` (analysts)."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
from pathlib import Path

import click

from decoy.settings import DecoySettings

_D = DecoySettings()   # defaults (and SCORESTREAM_DECOY_* values) shown in --help


@click.command("decoy")
@click.option("--instance", default=_D.instance,
              help="Stable id of this decoy: a restart with the same id takes over its partitions and fences "
                   "its unfinished transaction. Give each concurrent decoy its own.")
@click.option("--batch-size", type=click.IntRange(1), default=_D.batch_size, help="Records per transaction, at most.")
@click.option("--batch-ms", type=click.IntRange(1), default=_D.batch_ms,
              help="Commit what arrived within this many ms, even if fewer than --batch-size.")
@click.option("--metrics-port", type=int, default=_D.metrics_port, help="Serve /metrics on 127.0.0.1:PORT (0: off).")
@click.option("--idle-exit", "idle_exit_s", type=float, default=_D.idle_exit_s,
              help="Exit after this many seconds with nothing to archive (0: run until SIGTERM).")
def decoy_cmd(instance: str, batch_size: int, batch_ms: int, metrics_port: int, idle_exit_s: float) -> None:
    """Archive every request of scoring.requests into scoring.archive, exactly once.

    Key, value bytes and headers are copied untouched (malformed requests too),
    with source.topic/partition/offset/timestamp and archived_at headers added.
    SIGTERM finishes the open transaction and exits.
    """
    from decoy.archiver import Archiver
    from scorestream.console import out
    from scorestream.topics import TopicRegistry

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)    # `kill -USR1 <pid>`: every thread's stack, to stderr
    settings = DecoySettings(instance=instance, batch_size=batch_size, batch_ms=batch_ms,
                             metrics_port=metrics_port, idle_exit_s=idle_exit_s)
    stats = Archiver(settings, TopicRegistry.load()).run()
    out.print(f"archived {stats.archived} records in {stats.transactions} transactions "
              f"({stats.aborts} aborted) in {stats.seconds:.2f}s ({stats.rate:,.0f}/s)")


@click.command("replay")
@click.option("--from", "start", required=True, help="Start of the range, included: ISO-8601 (UTC unless an "
              "offset is given) or epoch ms.")
@click.option("--to", "end", required=True, help="End of the range, excluded: ISO-8601 or epoch ms.")
@click.option("--model", "models", multiple=True, metavar="NAME@VERSION",
              help="Score with this model of the registry (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one row per scored request to this Parquet file.")
@click.option("--to-topic", default=None, help="Republish the range's requests (as received) into this sandbox topic.")
@click.option("--with-payload", is_flag=True, help="Add the request payload (JSON text) as a column of --out.")
@click.option("--late-ms", type=click.IntRange(0), default=10_000,
              help="Look this far past --to for requests written late (out of timestamp order).")
@click.option("--with-outcomes", is_flag=True, help="Join the labels of scoring.outcomes: a `label` column in "
              "--out, and per model AUC, log loss and Brier beside those of the answers actually served.")
def replay_cmd(start: str, end: str, models: tuple[str, ...], out: Path | None, to_topic: str | None,
               with_payload: bool, late_ms: int, with_outcomes: bool) -> None:
    """Replay a time range of scoring.archive through the live extractor and model code.

    \b
    scorestream replay --from 2026-11-23T09:00Z --to 2026-11-23T10:00Z \\
        --model fraud_xgb@3 --model fraud_lr@1 --out replay.parquet
    """
    from decoy.replay import replay
    from decoy.timerange import TimeRange
    from scorestream.console import err, out as console, progress as _progress

    time_range = TimeRange.parse(start, end)
    summary = replay(time_range, models, out, to_topic, with_payload, late_ms,
                     progress=lambda total: _progress(total, "replaying"), with_outcomes=with_outcomes)
    if summary.read == 0:
        console.print(f"no archived requests in {time_range}: nothing written")
        return
    _print_summary(summary, console, err)


def _print_summary(s, console, err) -> None:
    from rich.table import Table

    console.print(f"replayed {s.read} archived requests of {s.time_range} in {s.seconds:.2f}s ({s.rate:,.0f}/s): "
                  f"{s.scored} scored, {s.skipped} malformed skipped")
    for reason, n in s.malformed.most_common():
        console.print(f"  skipped {n}: {reason}")
    if s.scores:
        table = Table("model", "p1", "p5", "p50", "p95", "p99", "served", "agree", "max |Δ|")
        for ref in s.scores:
            q = s.quantiles(ref)
            a = s.served[ref]
            table.add_row(ref, *(f"{v:.4f}" for v in q) if q else ["-"] * 5, str(a.compared),
                          f"{a.agreed / a.compared:.2%}" if a.compared else "-",
                          f"{a.max_delta:.2e}" if a.compared else "-")
        console.print(table)
        if not any(a.compared for a in s.served.values()):
            console.print("no answers of these models in scoring.results for this range: nothing to compare")
    if s.labels is not None:
        _print_grades(s, console)
    if s.out:
        console.print(f"wrote {s.rows_written} rows to {s.out}" if s.rows_written else f"no rows: {s.out} not written")
    if s.republished or s.republish_failed:
        console.print(f"republished {s.republished} requests" + (f", {s.republish_failed} failed" if s.republish_failed else ""))
        if s.republish_failed:
            err.print("[red]some requests were not republished[/red]")
            sys.exit(1)


def _print_grades(s, console) -> None:
    from rich.table import Table

    from decoy.replay import grades

    table = Table("graded on outcomes", "requests", "AUC", "log loss", "Brier")
    for ref, (scores, labels) in s.graded.items():
        if not labels:
            table.add_row(ref, "0", "-", "-", "-")
            continue
        g = grades(scores, labels)
        table.add_row(ref if ref != "served" else "answers served", str(g["n"]), f"{g['auc']:.4f}",
                      f"{g['log_loss']:.4f}", f"{g['brier']:.4f}")
    console.print(table)
    if not any(labels for _, labels in s.graded.values()):
        console.print("no outcomes for the requests of this range in scoring.outcomes")
