"""The topic registry (topics.yaml) and `topics apply`: plan, then change.

Code names topics by their id in topics.yaml (`requests`, `scores`, ...), never
by a literal name; a prefix (SCORESTREAM_TOPIC_PREFIX) gives tests and sandboxes
a namespace of their own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic)

from scorestream.errors import UserError
from scorestream.settings import KafkaSettings


@dataclass(frozen=True)
class Topic:
    id: str
    name: str
    partitions: int
    replication: int
    config: dict[str, str]
    purpose: str


@dataclass(frozen=True)
class TopicRegistry:
    topics: dict[str, Topic]

    @classmethod
    def load(cls, path: Path | None = None, prefix: str | None = None,
             environment: str | None = None) -> "TopicRegistry":
        """environment: embedded (one broker) or cluster; it picks the replication and min.insync.replicas
        of topics.yaml (default SCORESTREAM_KAFKA_ENVIRONMENT, else what `up` started)."""
        settings = KafkaSettings()
        path = path or settings.topics_file
        prefix = settings.topic_prefix if prefix is None else prefix
        environment = environment or settings.environment()
        doc = yaml.safe_load(Path(path).read_text())
        defaults = doc.get("defaults", {})

        def per_environment(value, what: str):
            if not isinstance(value, dict):
                return value
            if environment not in value:
                raise UserError(f"{path}: {what} names no value for environment {environment!r} "
                                f"(it has: {', '.join(value)})")
            return value[environment]
        topics = {}
        for topic_id, spec in doc["topics"].items():
            missing = {"name", "purpose"} - set(spec)
            if missing:
                raise UserError(f"{path}: topic {topic_id!r} misses {', '.join(sorted(missing))}")
            topics[topic_id] = Topic(
                id=topic_id,
                name=prefix + spec["name"],
                partitions=int(spec.get("partitions", defaults.get("partitions", 1))),
                replication=int(per_environment(spec.get("replication", defaults.get("replication", 1)),
                                                f"topic {topic_id!r} replication")),
                config={k: str(per_environment(v, f"topic {topic_id!r} {k}"))
                        for k, v in ((defaults.get("config") or {}) | (spec.get("config") or {})).items()},
                purpose=spec["purpose"],
            )
        return cls(topics)

    def __getitem__(self, topic_id: str) -> Topic:
        try:
            return self.topics[topic_id]
        except KeyError:
            raise KeyError(f"no topic {topic_id!r} in topics.yaml (known: {', '.join(self.topics)})") from None

    def name(self, topic_id: str) -> str:
        return self[topic_id].name

    def __iter__(self):
        return iter(self.topics.values())


@dataclass
class Plan:
    create: list[Topic] = field(default_factory=list)
    grow: list[tuple[Topic, int]] = field(default_factory=list)        # (topic, current partitions)
    reconfigure: list[tuple[Topic, dict[str, tuple[str, str]]]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.grow or self.reconfigure)

    def lines(self) -> list[str]:
        out = [f"create {t.name} (partitions={t.partitions}, replication={t.replication}, "
               f"{', '.join(f'{k}={v}' for k, v in t.config.items())})" for t in self.create]
        out += [f"grow {t.name} partitions {now} -> {t.partitions}" for t, now in self.grow]
        for t, diff in self.reconfigure:
            out += [f"set {t.name} {k}: {old} -> {new}" for k, (old, new) in diff.items()]
        return out or ["nothing to do: every topic matches topics.yaml"]


def plan(admin: AdminClient, registry: TopicRegistry, timeout_s: float = 15) -> Plan:
    """What `apply` would change, and what Kafka cannot do (refused)."""
    existing = admin.list_topics(timeout=timeout_s).topics
    result = Plan()
    present = [t for t in registry if t.name in existing]
    result.create = [t for t in registry if t.name not in existing]
    configs = _current_configs(admin, present, timeout_s)
    for topic in present:
        meta = existing[topic.name]
        now = len(meta.partitions)
        if topic.partitions < now:
            result.refused.append(f"{topic.name} has {now} partitions and topics.yaml asks for {topic.partitions}: "
                                  "Kafka cannot remove partitions; raise the number in topics.yaml or recreate the topic")
        elif topic.partitions > now:
            result.grow.append((topic, now))
        replicas = len(next(iter(meta.partitions.values())).replicas) if meta.partitions else topic.replication
        if replicas != topic.replication:
            result.refused.append(f"{topic.name} has replication {replicas} and topics.yaml asks for "
                                  f"{topic.replication}: change it with a partition reassignment, not here")
        diff = {k: (configs[topic.name].get(k, "?"), v) for k, v in topic.config.items()
                if configs[topic.name].get(k) != v}
        if diff:
            result.reconfigure.append((topic, diff))
    return result


def apply(admin: AdminClient, registry: TopicRegistry, timeout_s: float = 30) -> Plan:
    """Create missing topics, grow partitions, align configs. Refuses before changing anything."""
    todo = plan(admin, registry, timeout_s)
    if todo.refused:
        raise UserError("topics apply refused, nothing changed:\n  " + "\n  ".join(todo.refused))
    futures = {}
    if todo.create:
        futures.update(admin.create_topics([
            NewTopic(t.name, num_partitions=t.partitions, replication_factor=t.replication, config=t.config)
            for t in todo.create], operation_timeout=timeout_s))
    if todo.grow:
        futures.update(admin.create_partitions([NewPartitions(t.name, t.partitions) for t, _ in todo.grow]))
    for topic, diff in todo.reconfigure:
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic.name, incremental_configs=[
            ConfigEntry(k, new, incremental_operation=AlterConfigOpType.SET) for k, (_, new) in diff.items()])
        futures.update(admin.incremental_alter_configs([resource]))
    for what, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):  # a concurrent apply created it: fine
                raise UserError(f"topics apply failed on {what}: {exc.args[0].str()}") from exc
    _wait_until_applied(admin, registry, timeout_s)
    return todo


def _wait_until_applied(admin: AdminClient, registry: TopicRegistry, timeout_s: float) -> None:
    """The controller acknowledges a change before the broker's metadata and configs show it: wait for that."""
    deadline = time.monotonic() + timeout_s
    while left := _not_yet_visible(admin, registry, timeout_s):
        if time.monotonic() > deadline:
            raise UserError("topics changed but not yet visible: " + "; ".join(left))
        time.sleep(0.1)


def _not_yet_visible(admin: AdminClient, registry: TopicRegistry, timeout_s: float) -> list[str]:
    """What of registry the brokers do not show yet; empty: all of it."""
    try:
        left = plan(admin, registry, timeout_s)
    except KafkaException as exc:
        # of three brokers, the one asked for a new topic's configs may not know the topic yet
        if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return [f"a broker does not know a topic yet ({exc.args[0].str()})"]
        raise
    if not left.empty:
        return left.lines()
    return [] if _leaders_elected(admin, registry, timeout_s) else ["partition leaders not elected yet"]


def _leaders_elected(admin: AdminClient, registry: TopicRegistry, timeout_s: float) -> bool:
    meta = admin.list_topics(timeout=timeout_s).topics
    return all(p.leader >= 0 and not p.error for t in registry for p in meta[t.name].partitions.values())


def _current_configs(admin: AdminClient, topics: list[Topic], timeout_s: float) -> dict[str, dict[str, str]]:
    if not topics:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t.name) for t in topics]
    out = {}
    for resource, future in admin.describe_configs(resources).items():
        out[resource.name] = {k: e.value for k, e in future.result(timeout=timeout_s).items()}
    return out
