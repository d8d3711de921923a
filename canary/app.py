"""The faust-streaming app of `scorestream canary`: scores and results in, alerts out.

faust runs the app: its lifecycle and signals, a task that feeds the Monitor, a timer that closes the windows
that are due (the monitor's own event-time windows, not faust's wall-clock table sweep) and sends what the
AlertBook decides to scoring.alerts, through faust's producer. The task reads scores and results in batches with
librdkafka, not as faust streams (see read_inputs). Before the first window closes, the alerts topic is read
back, so a restarted monitor knows what fires already. The input group commits the offsets of the records
counted: a restarted monitor resumes where it was, losing only the windows that were open (docs/canary.md).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import faust
from confluent_kafka import Consumer, KafkaException, TopicPartition

from canary.alerts import latest, read_alerts
from canary.monitor import CanarySettings, Monitor
from scorestream import kafka, security
from scorestream.settings import KafkaSettings, StackSettings
from scorestream.topics import TopicRegistry

log = logging.getLogger("scorestream.canary")
READY = "canary monitor running"
READ_BATCH = 5000
READ_EVERY_S = 0.05           # how often the inputs are taken when fewer than READ_BATCH records wait


def last_offsets(records) -> list[TopicPartition]:
    """The offsets to store after records: one past the last of each partition."""
    last = {(r.topic(), r.partition()): r.offset() for r in records if not r.error()}
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in last.items()]


def references_file(settings: CanarySettings) -> Path:
    """Where the monitor keeps its references: one file per topic prefix, under <SCORESTREAM_HOME>/canary."""
    return (settings.state_dir or StackSettings().home / "canary") / f"{KafkaSettings().topic_prefix}references.json"


class Inputs:
    """The consumer of the monitor's two inputs, read in batches. A new group starts at the newest records, and
    its fetches gather records for up to fetch_wait_ms: the monitor judges windows, not single records. A
    consumer out of its group for rejoin_limit_s (kafka.GroupMembership), or failed fatally, is replaced; the new
    one resumes at the offsets stored once their records were counted."""

    def __init__(self, group: str, bootstrap: str, topics: list[str], settings: CanarySettings):
        self.group, self.bootstrap, self.topics, self.settings = group, bootstrap, topics, settings
        self.replacements = 0
        self.consumer = self._subscribe()

    def _subscribe(self) -> Consumer:
        gather = kafka.gathered_fetch(wait_ms=self.settings.fetch_wait_ms, min_bytes=1 << 20)
        consumer = kafka.consumer(self.group, self.bootstrap, **{
            "auto.offset.reset": "latest", "enable.auto.commit": True, "enable.auto.offset.store": False} | gather)
        self.membership = kafka.GroupMembership(self.settings.rejoin_limit_s)
        consumer.subscribe(self.topics, on_assign=lambda _c, _p: self.membership.joined(),
                           on_revoke=lambda _c, _p: self.membership.left(),
                           on_lost=lambda _c, _p: self.membership.left())
        return consumer

    def take(self, max_records: int) -> list:
        """What is fetched, up to max_records, without waiting; errors logged and left out. The records of a
        consumer that failed are left to its successor, which reads them again from the committed offsets."""
        if self.membership.stuck():
            self._replace(f"out of its group for {self.membership.out_for():.0f}s")
        records = self.consumer.consume(max_records, 0)
        errors = [r.error() for r in records if r.error()]
        for error in errors:
            log.warning("reading the monitor's inputs: %s", error)
        if any(kafka.is_fatal(e) for e in errors):
            self._replace("failed")
            return []
        return [r for r in records if not r.error()] if errors else records

    def counted(self, records) -> None:
        """Store the offsets after records: committed with the next automatic commit, or at close."""
        if not records:
            return
        try:
            self.consumer.store_offsets(offsets=last_offsets(records))
        except KafkaException as exc:        # a partition revoked meanwhile: its new owner reads it again
            log.warning("offsets not stored: %s", exc)

    def _replace(self, why: str) -> None:
        log.warning("the monitor's consumer %s; a new one resumes from the committed offsets", why)
        kafka.close_within(self.consumer)
        self.consumer = self._subscribe()
        self.replacements += 1

    def close(self) -> None:
        kafka.close_within(self.consumer)


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
    alerts = app.topic(alerts_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    scores_topic, results_topic = registry.name("scores"), registry.name("results")

    @app.task
    async def read_inputs():
        # Scores and answers are read in batches by librdkafka, not as faust streams: faust's per-record path
        # (events, acks, a channel and a stream per record) cost ten times the monitor's own work
        # (docs/benchmarks.md). Batches are taken on faust's event loop, as the window timer runs, so the monitor
        # is never touched by two threads.
        inputs = Inputs(f"{prefix}scorestream.canary.inputs", bootstrap, [scores_topic, results_topic], settings)
        try:
            while True:
                records = inputs.take(READ_BATCH)
                read(records)
                inputs.counted(records)
                if len(records) < READ_BATCH:
                    await asyncio.sleep(READ_EVERY_S)
        finally:
            inputs.close()

    def read(records) -> None:
        for record in records:
            if record.topic() == scores_topic:
                monitor.on_score(record.value())
            else:
                monitor.on_result(record.value(), float(record.timestamp()[1]))

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
