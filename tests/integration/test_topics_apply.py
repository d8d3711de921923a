"""topics apply against the real broker: idempotent, aligns configs, refuses what Kafka cannot do."""

import uuid

import pytest
import yaml
from confluent_kafka.admin import ConfigResource

from scorestream import kafka, topics
from scorestream.errors import UserError


def _config(admin, name):
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    return {k: e.value for k, e in admin.describe_configs([res])[res].result().items()}


def test_apply_creates_with_the_declared_configs(broker, registry):
    admin = kafka.admin(broker.bootstrap)
    meta = admin.list_topics(timeout=10).topics
    for t in registry:
        assert len(meta[t.name].partitions) == t.partitions
    assert _config(admin, registry.name("archive"))["retention.ms"] == "-1"
    assert _config(admin, registry.name("control"))["cleanup.policy"] == "compact"
    assert topics.plan(admin, registry).empty      # a second apply has nothing to do


def test_partitions_are_read_from_any_client_and_an_unknown_topic_has_none(broker, registry):
    name = registry.name("scores")
    clients = (kafka.admin(broker.bootstrap), kafka.producer(broker.bootstrap),
               kafka.consumer(f"t-{uuid.uuid4().hex[:6]}", broker.bootstrap))
    for client in clients:
        assert kafka.partitions(client, name) == list(range(registry["scores"].partitions))
        assert kafka.partitions(client, f"no-such-topic-{uuid.uuid4().hex[:6]}") == []
    clients[2].close()


def _registry_file(tmp_path, **changes):
    doc = yaml.safe_load(open(topics.KafkaSettings().topics_file))
    for topic_id, spec in changes.items():
        doc["topics"][topic_id].update(spec)
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_config_drift_and_more_partitions_are_applied(broker, registry, tmp_path):
    admin = kafka.admin(broker.bootstrap)
    prefix = registry.name("requests").removesuffix("scoring.requests")
    changed = topics.TopicRegistry.load(
        _registry_file(tmp_path, requests={"partitions": 6, "config": {"cleanup.policy": "delete", "retention.ms": 1000}}),
        prefix=prefix)
    dry = topics.plan(admin, changed)
    assert [line for line in dry.lines() if "grow" in line or "set" in line]
    topics.apply(admin, changed)
    assert len(admin.list_topics(timeout=10).topics[registry.name("requests")].partitions) == 6
    assert _config(admin, registry.name("requests"))["retention.ms"] == "1000"
    assert topics.plan(admin, changed).empty


def test_fewer_partitions_is_refused_and_nothing_changes(broker, registry, tmp_path):
    admin = kafka.admin(broker.bootstrap)
    prefix = registry.name("requests").removesuffix("scoring.requests")
    bad = topics.TopicRegistry.load(
        _registry_file(tmp_path, requests={"partitions": 1}, results={"config": {"retention.ms": 5000}}), prefix=prefix)
    with pytest.raises(UserError, match="cannot remove partitions"):
        topics.apply(admin, bad)
    assert _config(admin, registry.name("results"))["retention.ms"] != "5000"   # nothing half-applied


def test_fresh_prefix_creates_everything(broker):
    admin = kafka.admin(broker.bootstrap)
    reg = topics.TopicRegistry.load(prefix=f"fresh{uuid.uuid4().hex[:6]}.")
    assert len(topics.plan(admin, reg).create) == len(reg.topics)
