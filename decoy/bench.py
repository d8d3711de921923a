"""Benchmark of the decoy's archive rate and of replay's rate (docs/benchmarks.md).

    python -m decoy.bench --count 200000

Starts a throwaway broker on a free port (or uses --bootstrap), publishes
`count` synthetic requests under a fresh topic prefix, then times the
archiver catching up on that backlog (and replay reading it back, when a model
is given), each measured from its first record to its last.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

import click

from scorestream import kafka, topics


def _free_port() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))      # the KRaft controller's port
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


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
                                      kafka_port=_free_port()))
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
    stats = Archiver(DecoySettings(batch_size=batch_size, idle_exit_s=3), registry, bootstrap).run()
    click.echo(f"decoy: archived {stats.archived} in {stats.transactions} transactions, {stats.aborts} aborted, "
               f"{stats.seconds:.2f}s: {stats.rate:,.0f} requests/s")
    if models:
        _replay(registry, models)


def _replay(registry, models) -> None:
    raise click.UsageError("replay benchmark: not wired yet")


if __name__ == "__main__":
    main()
