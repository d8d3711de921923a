"""What `up` says when Java or Maven is missing: one line, what and how to fix."""

import pytest

from scorestream.broker import ensure_jars, java_binary
from scorestream.errors import UserError
from scorestream.settings import StackSettings


def test_java_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="Java not found: install a JDK 17"):
        java_binary()


def test_old_java_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "java"
    fake.write_text('#!/bin/sh\necho \'openjdk version "11.0.2"\' >&2\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="needs Java 17"):
        java_binary()


def test_jars_missing_and_maven_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="Maven \\(mvn\\) not found: install maven and run `make jars`"):
        ensure_jars(StackSettings(jars_dir=tmp_path / "jars"))


def test_cluster_id_never_reads_as_an_option():
    from scorestream.broker import cluster_id
    ids = [cluster_id() for _ in range(2000)]          # about 31 of them would start with "-" if drawn blindly
    assert len(set(ids)) == 2000 and not any(i.startswith("-") for i in ids) and {len(i) for i in ids} == {22}


def test_a_cluster_node_knows_every_voter_and_keeps_three_copies(tmp_path):
    """Node 2 of 3: its own ports (port + 2, + 3), every controller in its quorum, internal topics replicated."""
    from scorestream.broker import Broker, Cluster
    settings = StackSettings(home=tmp_path, kafka_port=30000, brokers=3)
    cluster = Cluster(settings)
    assert cluster.bootstrap == "127.0.0.1:30000,127.0.0.1:30002,127.0.0.1:30004"
    node = cluster.nodes[1]
    assert (node.name, node.port, node.dir) == ("kafka.2", 30002, tmp_path / "kafka" / "node2")
    text = node._write_config(node.port).read_text()
    for line in ("node.id=2", "controller.quorum.voters=1@127.0.0.1:30001,2@127.0.0.1:30003,3@127.0.0.1:30005",
                 "listeners=PLAINTEXT://127.0.0.1:30002,CONTROLLER://127.0.0.1:30003",
                 "offsets.topic.replication.factor=3", "transaction.state.log.min.isr=2", "min.insync.replicas=2"):
        assert line in text.splitlines()
    assert "controlled.shutdown.enable" not in text      # Kafka's default (true): it hands its leaders over
    single = Broker(StackSettings(home=tmp_path, kafka_port=30010))
    lines = single._write_config(30010).read_text().splitlines()
    # a lone node's controlled shutdown would answer Metadata with no brokers (scorestream/broker.py)
    assert single.name == "kafka" and {"min.insync.replicas=1", "controlled.shutdown.enable=false",
                                     "broker.session.timeout.ms=3000"} <= set(lines)
