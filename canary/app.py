"""The faust-streaming app of `scorestream canary`: scores and results in, alerts out.

Two agents feed the Monitor in batches; a timer closes the windows that are due
(the monitor's own event-time windows, not faust's wall-clock table sweep) and sends
what the AlertBook decides to scoring.alerts. Before the first window closes, the
alerts topic is read back, so a restarted monitor knows what fires already. The
consumer group commits its offsets as faust acknowledges events: a restarted monitor
resumes where it was, losing only the windows that were open (docs/canary.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from canary.alerts import latest, read_alerts
from canary.monitor import CanarySettings, Monitor
from scorestream import security
from scorestream.settings import KafkaSettings, StackSettings
from scorestream.topics import TopicRegistry

log = logging.getLogger("scorestream.canary")
READY = "canary monitor running"


def references_file(settings: CanarySettings) -> Path:
    """Where the monitor keeps its references: one file per topic prefix, under <SCORESTREAM_HOME>/canary."""
    return (settings.state_dir or StackSettings().home / "canary") / f"{KafkaSettings().topic_prefix}references.json"


class _GatheringThread(faust_aiokafka.AIOKafkaConsumerThread):
    def __init__(self, *args, fetch_wait_ms: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fetch_wait_ms = fetch_wait_ms

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # faust fixes min bytes 1 (every fetch answered at the first record): the broker may hold a fetch up to
        # fetch_wait_ms to gather records. aiokafka 0.14 (pinned) hands these two to its Fetcher at start()
        consumer._fetch_min_bytes, consumer._fetch_max_wait_ms = 1 << 20, self.fetch_wait_ms
        return consumer


def gathering_consumer(fetch_wait_ms: int) -> type:
    """faust's aiokafka Consumer with fetches that gather records for up to fetch_wait_ms: the scores come in
    small batches from several workers, and answering each fetch at its first record cost the monitor more
    CPU than all of its own work (docs/benchmarks.md)."""
    class GatheringConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self):
            return _GatheringThread(self, loop=self.loop, beacon=self.beacon, fetch_wait_ms=fetch_wait_ms)
    return GatheringConsumer


def build(settings: CanarySettings, policy, known_models: set[str], bootstrap: str | None = None,
          registry: TopicRegistry | None = None) -> tuple[faust.App, Monitor]:
    kafka_settings = KafkaSettings()
    bootstrap = bootstrap or kafka_settings.bootstrap()
    registry = registry or TopicRegistry.load()
    prefix = kafka_settings.topic_prefix
    monitor = Monitor(settings, policy.canary, known_models, set(policy.models), policy.sla_ms,
                      references_file(settings))
    alerts_topic = registry.name("alerts")
    monitor.restore(list(latest(read_alerts(alerts_topic, bootstrap)).values()))

    datadir = references_file(settings).parent / "faust"     # faust's default is the working directory
    datadir.mkdir(parents=True, exist_ok=True)
    brokers = ";".join(f"kafka://{server}" for server in bootstrap.split(","))     # faust's list of servers
    app = faust.App(f"{prefix}scorestream.canary", broker=brokers, web_enabled=False,
                    datadir=datadir, broker_credentials=security.faust_credentials(),
                    store="memory://", consumer_auto_offset_reset="latest",
                    topic_replication_factor=registry["alerts"].replication,     # its own topics, as ours
                    producer_acks=-1, logging_config=None)
    if settings.fetch_wait_ms > 0:
        app.transport.Consumer = gathering_consumer(settings.fetch_wait_ms)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    scores = app.topic(registry.name("scores"), **raw)
    results = app.topic(registry.name("results"), **raw)
    alerts = app.topic(alerts_topic, **raw)

    @app.agent(scores)
    async def on_scores(stream):
        async for batch in stream.take(2000, within=0.2):
            for value in batch:
                monitor.on_score(value)

    @app.agent(results)
    async def on_results(stream):
        async for events in stream.take_events(2000, within=0.2):
            for event in events:
                monitor.on_result(event.value, event.message.timestamp * 1000.0)

    announced = False

    @app.timer(interval=min(1.0, settings.window_s / 4))
    async def close_windows():
        nonlocal announced
        if not announced:
            print(f"{READY}: window {settings.window_s:g}s, canary {policy.canary}", flush=True)
            announced = True
        for alert in monitor.tick():
            delivered = await alerts.send(key=alert.key, value=alert.to_json())
            await delivered                  # acknowledged by the broker (acks=all) before it is logged
            print(f"alert {alert.state}: {alert.alert} {alert.model} {alert.value:g} "
                  f"{'>' if alert.state == 'firing' else '<='} {alert.threshold:g} in {alert.window}: {alert.reason}",
                  flush=True)

    return app, monitor


def run(settings: CanarySettings, policy, known_models: set[str]) -> None:
    """Serve metrics, then run the app until SIGTERM/SIGINT."""
    from scorestream.metrics import serve

    app, _ = build(settings, policy, known_models)
    serve(settings.metrics_port)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.spinner = None   # its handler sets the root logger to DEBUG: every debug record of aiokafka was built
    worker.execute_from_commandline()
