"""The CLI verbs of this part: `scorestream decoy` (ops) and `scorestream replay` (analysts)."""

from __future__ import annotations

import logging

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
    from scorestream.cli import out
    from scorestream.topics import TopicRegistry

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = DecoySettings(instance=instance, batch_size=batch_size, batch_ms=batch_ms,
                             metrics_port=metrics_port, idle_exit_s=idle_exit_s)
    stats = Archiver(settings, TopicRegistry.load()).run()
    out.print(f"archived {stats.archived} records in {stats.transactions} transactions "
              f"({stats.aborts} aborted) in {stats.seconds:.2f}s ({stats.rate:,.0f}/s)")
