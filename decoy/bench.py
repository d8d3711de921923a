"""Benchmark of the decoy's archive rate and of replay's rate (docs/benchmarks.md).

    python -m decoy.bench --count 200000

Starts a throwaway broker on a free port (or uses --bootstrap), publishes
`count` synthetic requests under a fresh topic prefix, then times the
archiver catching up on that backlog (and replay reading it back, when a model
is given), each measured from its first record to its last.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

import click

from scorestream import kafka, topics
from scorestream.ports import free_port


@click.command()
@click.option("--count", type=int, default=200_000, help="Requests published, then archived.")
@click.option("--bootstrap", default=None, help="Use this broker instead of starting a throwaway one.")
@click.option("--batch-size", type=int, default=5000)
@click.option("--model", "models", multiple=True, help="Also time replay of the archive with this model.")
def main(count: int, bootstrap: str | None, batch_size: int, models: tuple[str, ...]) -> None:
    broker = None
    if not bootstrap:
        from scorestream.broker import Broker
        from scorestream.settings import StackSettings
        broker = Broker(StackSettings(home=Path(tempfile.mkdtemp(prefix="scorestream-bench-")),
                                      kafka_port=free_port(2)))
        broker.start()
        bootstrap = broker.bootstrap
    os.environ["SCORESTREAM_BOOTSTRAP_SERVERS"] = bootstrap
    os.environ["SCORESTREAM_TOPIC_PREFIX"] = prefix = f"bench{uuid.uuid4().hex[:8]}."
    try:
        _run(count, bootstrap, prefix, batch_size, models)
    finally:
        if broker:
            broker.stop()


def _run(count: int, bootstrap: str, prefix: str, batch_size: int, models: tuple[str, ...]) -> None:
    from decoy.archiver import Archiver
    from decoy.settings import DecoySettings
    from scorestream.publish import publish, synthetic_requests

    registry = topics.TopicRegistry.load(prefix=prefix)
    topics.apply(kafka.admin(bootstrap), registry)
    report = publish(synthetic_requests(seed=1, count=count), registry.name("requests"), bootstrap=bootstrap)
    click.echo(f"published {report.delivered} requests in {report.seconds:.1f}s ({report.rate:,.0f}/s)")
    cpu = time.process_time()
    stats = Archiver(DecoySettings(batch_size=batch_size, idle_exit_s=3), registry, bootstrap).run()
    cpu = time.process_time() - cpu
    click.echo(f"decoy: archived {stats.archived} in {stats.transactions} transactions, {stats.aborts} aborted, "
               f"{stats.seconds:.2f}s: {stats.rate:,.0f} requests/s "
               f"(decoy process CPU {cpu:.2f}s: {stats.archived / cpu:,.0f} requests per CPU-second)")
    if models:
        _replay(registry, models)


def _replay(registry, models: tuple[str, ...]) -> None:
    """The whole archive (everything was published within the last hour) through the models, to Parquet."""
    from decoy.replay import replay
    from decoy.timerange import TimeRange

    now = int(time.time() * 1000)
    out = Path(tempfile.mkdtemp(prefix="scorestream-bench-")) / "replay.parquet"
    cpu = time.process_time()
    s = replay(TimeRange(now - 3_600_000, now + 60_000), models, out, registry=registry)
    cpu = time.process_time() - cpu
    click.echo(f"replay with {', '.join(models)}: {s.read} read, {s.scored} scored, {s.rows_written} rows "
               f"to Parquet in {s.seconds:.2f}s: {s.rate:,.0f} requests/s "
               f"(replay process CPU {cpu:.2f}s incl. model load: {s.read / cpu:,.0f} requests per CPU-second)")
    out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
