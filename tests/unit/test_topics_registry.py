import pytest

from scorestream.topics import TopicRegistry

DESIGN_TOPICS = {"requests", "archive", "features", "rejections", "scores", "results", "outcomes", "control", "alerts",
                 "deadletter", "posteriors"}


def test_every_design_topic_is_declared():
    registry = TopicRegistry.load(prefix="")
    assert set(registry.topics) == DESIGN_TOPICS
    assert all(t.name.startswith("scoring.") and t.purpose for t in registry)


def test_archive_forever_and_control_compacted():
    registry = TopicRegistry.load(prefix="")
    assert registry["archive"].config["retention.ms"] == "-1"
    assert registry["control"].config["cleanup.policy"] == "compact"
    for t in registry:
        assert "cleanup.policy" in t.config
        assert t.config["cleanup.policy"] == "compact" or "retention.ms" in t.config


def test_prefix_namespaces_every_topic():
    registry = TopicRegistry.load(prefix="sandbox.")
    assert registry.name("requests") == "sandbox.scoring.requests"


def test_unknown_id_says_what_is_known():
    with pytest.raises(KeyError, match="known: requests"):
        TopicRegistry.load(prefix="")["request"]


def test_replication_and_min_insync_replicas_per_environment():
    embedded = TopicRegistry.load(prefix="", environment="embedded")
    cluster = TopicRegistry.load(prefix="", environment="cluster")
    assert {(t.replication, t.config["min.insync.replicas"]) for t in embedded} == {(1, "1")}
    assert {(t.replication, t.config["min.insync.replicas"]) for t in cluster} == {(3, "2")}
    with pytest.raises(Exception, match="no value for environment 'lab'"):
        TopicRegistry.load(prefix="", environment="lab")
