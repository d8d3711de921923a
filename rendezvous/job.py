"""The rendezvous job (Flink): requests + scores keyed by request id, the policy broadcast.

A thin shell over rendezvous.core: Flink holds the per-request state and the
processing-time timers; core decides. Exactly one result per request.
Operator uids are stable (`rendezvous.*`): savepoints restore by them.
"""

from __future__ import annotations

import dataclasses
import gc
import logging

import orjson
from pyflink.common import Types, WatermarkStrategy
from pyflink.datastream.functions import KeyedBroadcastProcessFunction
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from rendezvous import core
from rendezvous.bandit import Bandit
from rendezvous.policy import Policy, PolicyError
from scorestream import flink, kafka
from scorestream.contract import Rejection
from scorestream.topics import TopicRegistry

log = logging.getLogger(__name__)
POLICY_STATE = MapStateDescriptor("policy", Types.STRING(), Types.STRING())


def parse(value: str | None) -> tuple | None:
    """A request -> ("request", id, ts), a score -> ("score", id, name@version, score),
    a rejection -> ("rejection", id, Rejection), a swap token -> ("token", body); None if none of them.

    The three topics come through one source, so one parse tells them apart; the extract job and the
    workers dead-letter malformed records, so here they are only counted.
    """
    try:
        doc = orjson.loads(value)
        if "payload" in doc:
            return ("request", str(doc["request_id"]), int(doc["ts"]))
        if "stage" in doc:
            rejection = Rejection.from_dict(doc)
            return ("rejection", rejection.request_id, rejection)
        if doc.get("kind") == "token":
            return ("token", doc["body"]) if doc.get("name") == "rendezvous" else ("token", {})
        return ("score", str(doc["request_id"]), f"{doc['model']}@{doc['version']}", float(doc["score"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):   # ContractError: a ValueError
        return None


def request_id_of(row) -> str:
    """The key of a request or a score ("" for a token and what does not parse: dropped and counted downstream)."""
    event = parse(row[0])
    return event[1] if event and event[0] != "token" else ""


class Rendezvous(KeyedBroadcastProcessFunction):
    """Input rows are (value, topic, partition) of requests and scores.

    answered_before: request ids a crashed run answered after the restore point (marked, never answered
    again); answered_by: the deployment every result names; predecessor: the deployment this one takes
    over from by a swap token (scorestream.swap): until the token of a partition of the requests has passed,
    its requests are the predecessor's, and so is every request the savepoint brought along.
    """

    def __init__(self, policy: dict, metrics_port: int, requests_topic: str, answered_before: frozenset = frozenset(),
                 answered_by: dict | None = None, predecessor: str | None = None):
        self.initial_policy, self.metrics_port, self.requests_topic = policy, metrics_port, requests_topic
        self.answered_before, self.answered_by = answered_before, answered_by
        self.deployment = (answered_by or {}).get("deployment", "")
        self.predecessor = predecessor

    def open(self, runtime_context) -> None:
        from rendezvous import metrics
        from scorestream.metrics import serve
        self.metrics = metrics
        from scorestream.swap import Ownership
        serve(self.metrics_port, wait=True)     # during a hot swap the predecessor holds the port until it stops
        self.ownership = Ownership(self.deployment, self.predecessor)
        self.state = runtime_context.get_state(ValueStateDescriptor("request", Types.PICKLED_BYTE_ARRAY()))
        self.bandit = Bandit()
        self.counters = {}                      # labelled counters, looked up once each
        self._use(Policy.from_dict(self.initial_policy))
        self.restored_policy_read = False
        # PyFlink, pemja and the job's modules never die: keep them out of the collector's full passes
        gc.freeze()

    def _use(self, policy: Policy) -> None:
        self.policy = policy
        self.metrics.POLICY_VERSION.set(policy.version)

    def _current_policy(self, ctx) -> Policy:
        """The policy in force. Every instance sees every control record, so it keeps its own copy; the
        broadcast state (costly to read from Python) is read once, for the policy a savepoint restored."""
        if not self.restored_policy_read:
            self.restored_policy_read = True
            doc = ctx.get_broadcast_state(POLICY_STATE).get("rendezvous")
            if doc is not None:
                self._use(Policy.from_dict(orjson.loads(doc)))
        return self.policy

    def _inc(self, counter, *labels: str) -> None:
        child = self.counters.get((counter, labels))
        if child is None:
            child = self.counters[(counter, labels)] = counter.labels(*labels)
        child.inc()

    def process_element(self, row, ctx):
        event = parse(row[0])
        if event is None:
            self._inc(self.metrics.EVENTS, "malformed")
            return
        if event[0] == "token":
            if row[1] == self.requests_topic:       # the cut is on the requests; tokens among the scores only pass
                self._inc(self.metrics.EVENTS, self.ownership.token(row[2], event[1]) or "other_token")
            return
        policy = self._current_policy(ctx)
        now = ctx.timer_service().current_processing_time()
        state = self.state.value()
        fresh = state is None
        if fresh:
            state = core.RequestState()
            self.metrics.LIVE_REQUESTS.inc()
        # a fresh state for a score is stored as it is (it cannot answer): mark it when its request comes
        if self.answered_before and not (fresh and event[0] == "score"):
            self._mark_if_answered_before(state, event[1])
        if event[0] == "request" and state.ts is None:
            if not self.ownership.owns(row[2]):
                self._mark(state, "not_owned")
            elif self.predecessor:
                state.owner = self.deployment
        elif event[0] == "rejection" and state.ts is None and self.predecessor and not self.ownership.taken:
            self._mark(state, "not_owned")     # before any token: its request is the predecessor's
        elif self.predecessor:
            self._mark_if_predecessors(state)
        if event[0] == "request":
            _, request_id, ts = event
            step = core.on_request(state, request_id, ts, self.bandit.choose(policy), policy, now)
        elif event[0] == "rejection":
            step = core.on_rejection(state, event[2], policy, now)
        else:
            _, request_id, model, score = event
            step = core.on_score(state, request_id, model, score, policy, now)
        yield from self._apply(step, state, ctx)

    def on_timer(self, timestamp, ctx):
        state = self.state.value()
        if state is None:
            return
        if self.answered_before:
            self._mark_if_answered_before(state, ctx.get_current_key())
        if self.predecessor:
            self._mark_if_predecessors(state)
        step = core.on_timer(state, ctx.get_current_key(), self._current_policy(ctx), timestamp)
        yield from self._apply(step, state, ctx)

    def _mark_if_answered_before(self, state: core.RequestState, request_id: str) -> None:
        if request_id in self.answered_before:
            self._mark(state, "answered_before_restore")

    def _mark_if_predecessors(self, state: core.RequestState) -> None:
        """A request seen before this deployment owned its partition (or in the savepoint) is answered by
        the predecessor."""
        if state.ts is not None and state.owner != self.deployment:
            self._mark(state, "not_owned")

    def _mark(self, state: core.RequestState, why: str) -> None:
        if core.mark_answered(state):
            self._inc(self.metrics.EVENTS, why)

    def process_broadcast_element(self, value, ctx):
        """A control record: a policy document replaces the policy in force (validated first)."""
        try:
            doc = orjson.loads(value)
            if doc.get("kind") != "policy" or doc.get("name") != "rendezvous":
                return
            policy = Policy.from_dict(doc["body"])
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, PolicyError) as exc:
            log.error("rendezvous: control record ignored: %s", exc)
            return
        log.info("rendezvous: policy version %s in force", policy.version)
        ctx.get_broadcast_state(POLICY_STATE).put("rendezvous", orjson.dumps(policy.to_dict()).decode())
        self._use(policy)
        self.restored_policy_read = True

    def _apply(self, step: core.Step, state: core.RequestState, ctx):
        timers = ctx.timer_service()
        for t in step.cancel:
            timers.delete_processing_time_timer(t)
        for t in step.timers:
            timers.register_processing_time_timer(t)
        if step.event:
            self._inc(self.metrics.EVENTS, step.event)
        if step.clear:
            self.state.clear()
            self.metrics.LIVE_REQUESTS.dec()
        elif step.store:
            self.state.update(state)
        if step.result:
            r = step.result
            if self.answered_by:
                r = dataclasses.replace(r, answered_by=self.answered_by)
            self._inc(self.metrics.ANSWERS, r.rule, f"{r.model}@{r.version}" if r.model else r.rule)
            if r.error:
                self._inc(self.metrics.REJECTED, r.error["stage"], r.error["field"])
            self.metrics.LATENCY.observe(r.latency_ms / 1000.0)
            if r.canary:
                self.metrics.CANARY_DELTA.observe(r.canary["delta"])
            yield r.to_json().decode()


def build(env, registry: TopicRegistry, bootstrap: str, policy: Policy, metrics_port: int = 0,
          group: str = "scorestream.rendezvous", start: str = "committed", answered_before: frozenset = frozenset(),
          answered_by: dict | None = None, predecessor: str | None = None) -> None:
    """The job's graph. `group` and `start` let a second instance run beside the stack's (rendezvous.bench);
    answered_before, answered_by and predecessor: see Rendezvous."""
    no_wm = WatermarkStrategy.no_watermarks()
    # one source for all three topics, with each record's partition (the cut of a hot swap is per partition)
    inputs = [registry.name("requests"), registry.name("scores"), registry.name("rejections")]
    events = flink.kafka_partitioned_source(env, "rendezvous_events", inputs, group, bootstrap, start=start,
                                            properties=kafka.gathered_fetch(java=True))
    control = (env.from_source(flink.kafka_source(registry.name("control"), group + ".control", bootstrap,
                                                  start="earliest"), no_wm, "control")
               .uid("rendezvous.source.control"))
    (events.key_by(request_id_of, key_type=Types.STRING())
        .connect(control.broadcast(POLICY_STATE))
        .process(Rendezvous(policy.to_dict(), metrics_port, registry.name("requests"), answered_before, answered_by,
                            predecessor), output_type=Types.STRING())
        .uid("rendezvous").name("rendezvous")
        .sink_to(flink.kafka_sink(registry.name("results"), bootstrap)).uid("rendezvous.sink"))
