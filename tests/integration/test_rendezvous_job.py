"""The rendezvous job on real Flink and the real broker: one answer per request, the cascade, the default."""

from __future__ import annotations

import os
import sys
import time
import uuid

import pytest
import yaml

from scorestream import kafka
from scorestream.contract import Control, DeadLetter, KafkaRecord, Outcome, Request, Result, Score
from scorestream.metrics import read_metric
from scorestream.process import ManagedProcess
from scorestream.synthetic import TransactionGenerator
from scorestream.ports import free_port
from tests.readback import read_records

PAYLOAD = TransactionGenerator(0).batch(1)[0].payload
POLICY = """\
version: 4
sla_ms: 300
canary: fraud_lr@1
arms:
  - model: fraud_xgb@3
fallback:
  - after_ms: 100
    use: [fraud_xgb@2]
  - after_ms: 200
    use: [fraud_lr@1]
default: {score: -1.0}
outcome_horizon_s: 5
discount: 1.0
"""


def score(request_id: str, ref: str, value: float) -> Score:
    name, version = ref.split("@")
    return Score(request_id, name, int(version), "canary" if name == "fraud_lr" else "candidate", value,
                 "test", time.time() * 1000, time.time() * 1000, "txn@1")


class Harness:
    def __init__(self, registry, bootstrap):
        self.registry, self.bootstrap = registry, bootstrap
        self.producer = kafka.producer(bootstrap)

    def request(self, request_id: str) -> None:
        r = Request(request_id, int(time.time() * 1000), PAYLOAD)   # one the policy's extractor accepts
        kafka.produce(self.producer, self.registry.name("requests"), r.to_record())
        self.producer.flush(10)

    def score(self, request_id: str, ref: str, value: float) -> None:
        kafka.produce(self.producer, self.registry.name("scores"), score(request_id, ref, value).to_record())
        self.producer.flush(10)

    def outcome(self, request_id: str, label, raw: bytes | None = None) -> None:
        value = raw or Outcome(request_id, label, int(time.time() * 1000)).to_json()
        kafka.produce(self.producer, self.registry.name("outcomes"), KafkaRecord(request_id.encode(), value))
        self.producer.flush(10)

    def results(self, want: set[str], timeout_s: float = 30) -> list[Result]:
        """Every result of the topic for the wanted ids, waiting until all arrived (then a little longer)."""
        return [r for _, r in self.keyed_results(want, timeout_s)]

    def keyed_results(self, want: set[str], timeout_s: float = 30) -> list[tuple[bytes | None, Result]]:
        """results(), each with its Kafka key."""
        consumer = kafka.consumer(f"test-{uuid.uuid4().hex[:6]}", self.bootstrap)
        consumer.subscribe([self.registry.name("results")])
        found: list[tuple[bytes | None, Result]] = []
        deadline = time.monotonic() + timeout_s
        settle = None
        while time.monotonic() < deadline and (settle is None or time.monotonic() < settle):
            for msg in consumer.consume(1000, timeout=0.2):
                if not msg.error():
                    r = Result.from_json(msg.value())
                    if r.request_id in want:
                        found.append((msg.key(), r))
            if settle is None and {r.request_id for _, r in found} >= want:
                settle = time.monotonic() + 1.0      # would a second answer come? wait and see
        consumer.close()
        return found


@pytest.fixture(scope="module")
def rendezvous(tmp_path_factory, broker):
    """The rendezvous job as `up` runs it, on topics of this module's own."""
    from scorestream import topics
    prefix = f"rdv{uuid.uuid4().hex[:8]}."
    registry = topics.TopicRegistry.load(prefix=prefix)
    topics.apply(kafka.admin(broker.bootstrap), registry)
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(POLICY)
    job = ManagedProcess("flink.rendezvous", policy.parent)
    metrics_port = free_port(2)
    job.start([sys.executable, "-m", "scorestream.cli", "job", "rendezvous", "--policy", str(policy),
               "--metrics-port", str(metrics_port)], env=os.environ | {"SCORESTREAM_TOPIC_PREFIX": prefix})
    harness = Harness(registry, broker.bootstrap)
    harness.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    harness.request("warmup")
    harness.score("warmup", "fraud_xgb@3", 0.5)
    assert harness.results({"warmup"}, timeout_s=90), job.log_tail(40)
    yield harness
    assert job.stop(timeout_s=30)


def test_preferred_fallback_canary_and_default(rendezvous):
    h = rendezvous
    tag = uuid.uuid4().hex[:6]
    ids = {k: f"{tag}-{k}" for k in ("preferred", "fallback", "canary_only", "nothing")}
    for rid in ids.values():
        h.request(rid)
    h.score(ids["preferred"], "fraud_lr@1", 0.2)
    h.score(ids["preferred"], "fraud_xgb@3", 0.9)
    h.score(ids["fallback"], "fraud_xgb@2", 0.4)
    h.score(ids["canary_only"], "fraud_lr@1", 0.1)
    results = {r.request_id: r for r in h.results(set(ids.values()))}
    assert len(results) == 4
    preferred = results[ids["preferred"]]
    assert (preferred.model, preferred.version, preferred.rule, preferred.score) == ("fraud_xgb", 3, "preferred", 0.9)
    assert preferred.canary == {"score": 0.2, "delta": pytest.approx(0.7)}
    assert preferred.policy_version == 4
    assert results[ids["fallback"]].rule == "fallback@100ms" and results[ids["fallback"]].latency_ms >= 100
    assert results[ids["canary_only"]].rule == "fallback@200ms" and results[ids["canary_only"]].model == "fraud_lr"
    default = results[ids["nothing"]]
    assert (default.rule, default.score, default.model) == ("default", -1.0, None)
    assert 300 <= default.latency_ms < 300 + 200


def test_results_are_keyed_by_request_id_and_a_request_without_key_is_answered(rendezvous):
    """Every result's Kafka key is its request id (so any client can partition, compact, look up answers). The
    job keys its input by the Kafka key; a request a producer sent without one is keyed by its request id."""
    h = rendezvous
    tag = uuid.uuid4().hex[:6]
    keyed, unkeyed = [f"{tag}-keyed-{i}" for i in range(10)], f"{tag}-unkeyed"
    for rid in keyed:
        h.request(rid)
        h.score(rid, "fraud_xgb@3", 0.7)
    request = Request(unkeyed, int(time.time() * 1000), PAYLOAD)
    kafka.produce(h.producer, h.registry.name("requests"), KafkaRecord(None, request.to_json()))
    h.score(unkeyed, "fraud_xgb@3", 0.6)
    found = h.keyed_results(set(keyed) | {unkeyed})
    assert sorted(r.request_id for _, r in found) == sorted(keyed + [unkeyed])
    assert all(key == r.request_id.encode() for key, r in found), found
    assert {r.rule for _, r in found} == {"preferred"}       # the unkeyed request met its score
    # Our producers hash keys as Java's clients do (murmur2), so a request and its answer share a partition.
    wanted = {rid.encode() for rid in keyed}
    partition = {topic: {r.key: r.partition for r in read_records(h.registry.name(topic), h.bootstrap)
                         if r.key in wanted} for topic in ("requests", "results")}
    assert set(partition["results"]) == wanted and partition["results"] == partition["requests"]


def test_exactly_one_answer_despite_duplicates_and_late_scores(rendezvous):
    h = rendezvous
    ids = [f"dup-{uuid.uuid4().hex[:6]}-{i}" for i in range(20)]
    for rid in ids:
        h.request(rid)
        h.score(rid, "fraud_xgb@3", 0.3)
        h.score(rid, "fraud_xgb@3", 0.3)          # duplicate score
        h.request(rid)                            # duplicate request
    h.score("never-requested", "fraud_xgb@3", 0.1)
    assert sorted(r.request_id for r in h.results(set(ids))) == sorted(ids)
    # late for certain only once answered: requests and scores are two topics, read in no fixed order
    for rid in ids:
        h.score(rid, "fraud_xgb@2", 0.6)
    results = h.results(set(ids) | {"never-requested"})      # waits out the timeout: no answer may come
    assert sorted(r.request_id for r in results) == sorted(ids)


def test_new_policy_takes_effect_without_restart(rendezvous):
    h = rendezvous
    doc = yaml.safe_load(POLICY)
    doc["version"], doc["default"] = 5, {"score": -2.0}
    control = Control("policy", "rendezvous", doc, int(time.time() * 1000))
    kafka.produce(h.producer, h.registry.name("control"), control.to_record())
    h.producer.flush(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rid = f"policy-{uuid.uuid4().hex[:6]}"
        h.request(rid)
        (result,) = h.results({rid})
        if result.policy_version == 5:
            assert result.score == -2.0
            return
    pytest.fail("policy version 5 never took effect")


def test_state_is_freed_after_the_grace_period(rendezvous):
    """Keyed state holds requests for the grace period only: it does not grow with requests served."""
    from rendezvous.core import GRACE_MS
    h = rendezvous
    ids = [f"state-{uuid.uuid4().hex[:6]}-{i}" for i in range(50)]
    for rid in ids:
        h.request(rid)
    assert len(h.results(set(ids))) == 50
    assert read_metric(h.metrics_url, "scorestream_rendezvous_live_requests") >= 50
    deadline = time.monotonic() + GRACE_MS / 1000 + 15
    while read_metric(h.metrics_url, "scorestream_rendezvous_live_requests") > 0:
        assert time.monotonic() < deadline, "requests still held after the grace period"
        time.sleep(0.5)
    assert read_metric(h.metrics_url, "scorestream_rendezvous_events_total{event=\"late_score\"}") >= 20


def _read_all(bootstrap: str, topic: str, settle_s: float = 2.0) -> list:
    consumer = kafka.consumer(f"test-{uuid.uuid4().hex[:6]}", bootstrap)
    consumer.subscribe([topic])
    found, quiet_until = [], time.monotonic() + 10
    while time.monotonic() < quiet_until:
        msgs = [m for m in consumer.consume(1000, timeout=0.2) if not m.error()]
        found += msgs
        if msgs:
            quiet_until = max(quiet_until, time.monotonic() + settle_s)
    consumer.close()
    return found


def test_outcomes_are_joined_once_counted_and_learned(rendezvous):
    """Every model that scored learns; duplicates, unknown ids and bad labels are counted, never learned twice."""
    from rendezvous.learner import read_snapshot
    h = rendezvous
    before = {r: read_metric(h.metrics_url, f'scorestream_rendezvous_outcomes_total{{result="{r}"}}')
              for r in ("joined", "duplicate", "unmatched", "invalid")}
    learned_before = read_metric(h.metrics_url, "scorestream_rendezvous_outcomes_learned")
    ids = [f"out-{uuid.uuid4().hex[:6]}-{i}" for i in range(20)]
    for rid in ids:
        h.request(rid)
        h.score(rid, "fraud_xgb@3", 0.9)       # right: every label is 1
        h.score(rid, "fraud_xgb@2", 0.1)       # wrong
    assert len(h.results(set(ids))) == 20
    for rid in ids:
        h.outcome(rid, 1)
    for rid in ids[:5]:
        h.outcome(rid, 1)                      # duplicates
    h.outcome("never-seen", 0)
    h.outcome(ids[5], None, raw=b'{"request_id": "%s", "label": 2, "ts": 1}' % ids[5].encode())
    deadline = time.monotonic() + 30
    want = {"joined": 20, "duplicate": 5, "unmatched": 1, "invalid": 1}
    while True:
        now = {r: read_metric(h.metrics_url, f'scorestream_rendezvous_outcomes_total{{result="{r}"}}') - before[r]
               for r in want}
        learned = read_metric(h.metrics_url, "scorestream_rendezvous_outcomes_learned") - learned_before
        if now == want and learned == 20:
            break
        assert time.monotonic() < deadline, (now, learned)
        time.sleep(0.5)
    means = {m: read_metric(h.metrics_url, f'scorestream_rendezvous_posterior_mean{{model="{m}"}}')
             for m in ("fraud_xgb@3", "fraud_xgb@2")}
    assert means["fraud_xgb@3"] > 0.9 and means["fraud_xgb@2"] < 0.25      # 1 - squared error, prior Beta(1, 1)
    snapshot = read_snapshot(_read_all(h.bootstrap, h.registry.name("posteriors"))[-1].value())
    assert snapshot["outcomes"] - learned_before == 20
    dead = [DeadLetter.from_record(KafkaRecord.from_message(m))
            for m in _read_all(h.bootstrap, h.registry.name("deadletter"))]
    assert [d.stage for d in dead if ids[5].encode() in d.record.value] == ["rendezvous"]
    assert "label" in next(d.reason for d in dead if ids[5].encode() in d.record.value)
