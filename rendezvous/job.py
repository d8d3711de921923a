"""The rendezvous job (Flink): requests, scores, rejections and outcomes keyed by request id, the policy and
the posteriors broadcast.

A thin shell over rendezvous.core: Flink holds the per-request state and the
processing-time timers; core decides. Exactly one result per request. An
outcome joined with its request's scores becomes a reward (side output) for
the learner (rendezvous/learner.py), whose posterior snapshots come back
through scoring.posteriors into the broadcast state. Records come with their
topic and partition: a swap token marks the cut of a hot swap per partition
(savepoints/, scorestream/swap.py).
Operator uids are stable (`rendezvous.*`): savepoints restore by them.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import replace

import orjson
from pyflink.common import Row, Types, WatermarkStrategy
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedBroadcastProcessFunction
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from rendezvous import core
from rendezvous.bandit import Bandit
from rendezvous.learner import Learner, last_snapshot, read_snapshot, reward_record
from rendezvous.policy import Policy, PolicyError
from scorestream import flink, kafka
from scorestream.contract import ContractError, KafkaRecord, Outcome, Rejection
from scorestream.topics import TopicRegistry

log = logging.getLogger(__name__)
POLICY_STATE = MapStateDescriptor("policy", Types.STRING(), Types.STRING())
REWARDS = OutputTag("rewards", Types.STRING())
KEYED_TOPICS = ("requests", "scores", "rejections", "outcomes")     # read through one keyed source (build)


def parse(value: str | None) -> tuple | None:
    """A request -> ("request", id, ts, payload), a score -> ("score", id, name@version, score),
    a rejection -> ("rejection", id, Rejection), an outcome -> ("outcome", id, label) or
    ("bad_outcome", id, reason), a swap token -> ("token", body); None if none of these.

    The four topics come through one source, so one parse tells them apart (a rejection has a stage, an
    outcome a label, a token its kind). The extract job and the workers dead-letter malformed requests and scores, so here
    they are only counted; the rendezvous is the one reader of outcomes, so it dead-letters bad ones.
    """
    try:
        doc = orjson.loads(value)
        if "payload" in doc:    # typed as the contract says, as the extract job reads it (else it rejects it)
            request_id, ts = doc["request_id"], doc["ts"]
            return ("request", request_id, ts, doc["payload"]) if type(request_id) is str and type(ts) is int else None
        if "stage" in doc:
            rejection = Rejection.from_dict(doc)
            return ("rejection", rejection.request_id, rejection)
        if "label" in doc:
            try:
                outcome = Outcome.from_dict(doc)
            except ContractError as exc:
                return ("bad_outcome", str(doc.get("request_id", "")), str(exc))
            return ("outcome", outcome.request_id, outcome.label)
        if doc.get("kind") == "token":
            return ("token", doc["body"]) if doc.get("name") == "rendezvous" else ("token", {})
        return ("score", str(doc["request_id"]), f"{doc['model']}@{doc['version']}", float(doc["score"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):  # ContractError: ValueError
        return None


class Rendezvous(KeyedBroadcastProcessFunction):
    """Input rows are (value, topic, partition) of requests, scores, rejections and outcomes.

    topics: the names of requests, outcomes, posteriors, deadletter and results. answered_before: request ids a
    crashed run answered after the restore point (marked, never answered again); when Flink itself restarts the
    task from its last checkpoint, the job reads them from the results (rendezvous/recovery.py, a checkpoint
    interval before the newest result on); answered_by: the deployment every
    result names; predecessor: the deployment this one takes over from by a swap token (scorestream.swap):
    until the token of a partition of the requests has passed, its requests are the predecessor's, and so
    is every request the savepoint brought along.
    """

    def __init__(self, policy: dict, metrics_port: int, bootstrap: str, topics: dict[str, str],
                 answered_before: frozenset = frozenset(), answered_by: dict | None = None,
                 predecessor: str | None = None, *, checkpoint_interval_ms: int):
        self.initial_policy, self.metrics_port = policy, metrics_port
        self.checkpoint_interval_ms = checkpoint_interval_ms
        self.bootstrap, self.topics = bootstrap, topics
        self.answered_before, self.answered_by = answered_before, answered_by
        self.deployment = (answered_by or {}).get("deployment", "")
        self.predecessor = predecessor

    def open(self, runtime_context) -> None:
        from rendezvous import metrics
        from scorestream.metrics import serve
        from scorestream.swap import ownership
        self.metrics = metrics
        flink.check_loaded_code("rendezvous", (self.answered_by or {}).get("version"))
        serve(self.metrics_port, wait=True)     # during a hot swap the predecessor holds the port until it stops
        self.ownership = ownership("rendezvous", self.deployment, self.predecessor)
        self.state = runtime_context.get_state(ValueStateDescriptor("request", Types.PICKLED_BYTE_ARRAY()))
        attempt = flink.attempt_number(runtime_context)
        if attempt > 0:                           # restarted by Flink from its last checkpoint
            from rendezvous.recovery import answered_before_restart
            since_restore = answered_before_restart(self.topics["results"], self.checkpoint_interval_ms,
                                                    self.bootstrap)
            self.answered_before = self.answered_before | frozenset(since_restore)
            log.warning("rendezvous: attempt %d: %d requests answered since the checkpoint will not be answered "
                        "again", attempt, len(since_restore))
        self.bandit = Bandit()
        self.counters = {}                      # labelled counters, looked up once each
        self.dead = None                        # dead letters of bad outcomes, opened on the first one
        self._use(Policy.from_dict(self.initial_policy))
        self.restored_policy_read = False
        resume = last_snapshot(self.topics["posteriors"], self.bootstrap)   # a start without state
        if resume is not None:
            self._learned(resume)
        # PyFlink, pemja and the job's modules never die: keep them out of the collector's full passes
        gc.freeze()

    def _use(self, policy: Policy) -> None:
        self.policy = policy
        self.metrics.POLICY_VERSION.set(policy.version)

    def _learned(self, snapshot: dict) -> None:
        """Posteriors of the learner in force for the next choices, and on the dashboard."""
        self.bandit.use(snapshot["posteriors"])
        for model, p in self.bandit.posteriors.items():
            self.metrics.POSTERIOR_MEAN.labels(model).set(p.mean)
        self.metrics.OUTCOMES_LEARNED.set(snapshot["outcomes"])

    @staticmethod
    def _refusal(policy: Policy, payload) -> tuple[str, str] | None:
        """The policy's extractor on the payload: kept with the request, it answers `rejected` at the SLA should
        the extract job's rejection come later than that (never the default score for a refused payload)."""
        from extractors import get_extractor
        return get_extractor(policy.extractor).refusal(payload)

    def _current_policy(self, ctx) -> Policy:
        """The policy in force. Every instance sees every control record, so it keeps its own copy; the
        broadcast state (costly to read from Python) is read once, for what a savepoint restored: the policy
        and the posteriors."""
        if not self.restored_policy_read:
            self.restored_policy_read = True
            broadcast = ctx.get_broadcast_state(POLICY_STATE)
            doc = broadcast.get("rendezvous")
            if doc is not None:
                self._use(Policy.from_dict(orjson.loads(doc)))
            learned = read_snapshot(broadcast.get("posteriors"))
            if learned is not None:
                self._learned(learned)
        return self.policy

    def _inc(self, counter, *labels: str) -> None:
        child = self.counters.get((counter, labels))
        if child is None:
            child = self.counters[(counter, labels)] = counter.labels(*labels)
        child.inc()

    def process_element(self, row, ctx):
        value, topic, partition = row[0], row[1], row[2]
        event = parse(value)
        if event is None:
            self._inc(self.metrics.EVENTS, "malformed")
            return
        if event[0] == "token":
            if topic == self.topics["requests"]:   # the cut is on the requests; tokens elsewhere only pass
                self._inc(self.metrics.EVENTS, self.ownership.token(partition, event[1]) or "other_token")
            return
        policy = self._current_policy(ctx)
        now = ctx.timer_service().current_processing_time()
        state = self.state.value()
        if event[0] in ("outcome", "bad_outcome"):
            yield from self._outcome(event, value, state, policy, ctx)
            return
        fresh = state is None
        if fresh:
            state = core.RequestState()
            self.metrics.LIVE_REQUESTS.inc()
        # a fresh state for a score is stored as it is (it cannot answer): mark it when its request comes
        if self.answered_before and not (fresh and event[0] == "score"):
            self._mark_if_answered_before(state, event[1])
        if event[0] == "request" and state.ts is None:
            if not self.ownership.owns(partition):
                self._mark(state, "not_owned")
            elif self.predecessor:
                state.owner = self.deployment
        elif event[0] == "rejection" and state.ts is None and self.predecessor and not self.ownership.taken:
            self._mark(state, "not_owned")     # before any token: its request is the predecessor's
        elif self.predecessor:
            self._mark_if_predecessors(state)
        capped = self.bandit.capped(policy)
        if event[0] == "request":
            _, request_id, ts, payload = event
            step = core.on_request(state, request_id, ts, self.bandit.choose(policy), policy, now, capped,
                                   self._refusal(policy, payload))
        elif event[0] == "rejection":
            step = core.on_rejection(state, event[2], policy, now)
        else:
            _, request_id, model, score = event
            step = core.on_score(state, request_id, model, score, policy, now, capped)
        yield from self._apply(step, state, ctx, policy)

    def _outcome(self, event: tuple, value: str, state: core.RequestState | None, policy: Policy, ctx):
        """Joined while the request's state is held (until ts + outcome_horizon_s); an outcome that comes
        later, or for an id never seen, finds no state: counted, never stored."""
        if event[0] == "bad_outcome":
            self._inc(self.metrics.OUTCOMES, "invalid")
            self._dead_letter(value, event[2])
            return
        if state is None:
            self._inc(self.metrics.OUTCOMES, "unmatched")
            return
        step = core.on_outcome(state, event[2])
        self._inc(self.metrics.OUTCOMES, "joined" if step.event == "outcome_joined" else "duplicate")
        yield from self._apply(replace(step, event=None), state, ctx, policy)

    def _dead_letter(self, value: str, reason: str) -> None:
        from scorestream.deadletter import DeadLetterSink
        if self.dead is None:
            self.dead = DeadLetterSink(kafka.producer(self.bootstrap), self.topics["deadletter"], "rendezvous")
        self.dead.send(KafkaRecord(None, value.encode(), topic=self.topics["outcomes"]), reason)
        self.dead.producer.flush(30)      # rare; safe before the source offset moves on

    def on_timer(self, timestamp, ctx):
        state = self.state.value()
        if state is None:
            return
        if self.answered_before:
            self._mark_if_answered_before(state, ctx.get_current_key())
        if self.predecessor:
            self._mark_if_predecessors(state)
        policy = self._current_policy(ctx)
        step = core.on_timer(state, ctx.get_current_key(), policy, timestamp, self.bandit.capped(policy))
        yield from self._apply(step, state, ctx, policy)

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
        """A control record: a policy document replaces the policy in force (validated first).
        A posteriors snapshot of the learner: the bandit chooses with it from now on."""
        learned = read_snapshot(value) if value.startswith('{"posteriors"') else None
        if learned is not None:
            ctx.get_broadcast_state(POLICY_STATE).put("posteriors", value)
            self._learned(learned)
            return
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

    def _apply(self, step: core.Step, state: core.RequestState, ctx, policy: Policy):
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
        if step.reward and step.reward[0]:
            yield REWARDS, reward_record(step.reward[0], step.reward[1], policy.discount)
        if step.result:
            r = step.result
            if self.answered_by:
                r = replace(r, answered_by=self.answered_by)
            model = f"{r.model}@{r.version}" if r.model else None
            self.bandit.answered(model)
            self._inc(self.metrics.ANSWERS, r.rule, model or r.rule)
            if r.error:
                self._inc(self.metrics.REJECTED, r.error["stage"], r.error["field"])
            self.metrics.LATENCY.observe(r.latency_ms / 1000.0)
            if r.canary:
                self.metrics.CANARY_DELTA.observe(r.canary["delta"])
            yield Row(r.request_id, r.to_json().decode())     # keyed by request id on scoring.results


def build(env, registry: TopicRegistry, bootstrap: str, policy: Policy, metrics_port: int = 0,
          group: str = "scorestream.rendezvous", start: str = "committed", answered_before: frozenset = frozenset(),
          answered_by: dict | None = None, predecessor: str | None = None) -> None:
    """The job's graph. `group` and `start` let a second instance run beside the stack's (rendezvous.bench);
    answered_before, answered_by and predecessor: see Rendezvous."""
    no_wm = WatermarkStrategy.no_watermarks()
    # one source for the four keyed topics, with each record's partition (the cut of a hot swap is per partition)
    keyed = [registry.name(t) for t in KEYED_TOPICS]
    events = flink.kafka_keyed_source(env, "rendezvous_events", keyed, group, bootstrap, start=start,
                                      properties=kafka.gathered_fetch(java=True))
    control = (env.from_source(flink.kafka_source(registry.name("control"), group + ".control", bootstrap,
                                                  start="earliest"), no_wm, "control")
               .uid("rendezvous.source.control"))
    # a start without state reads the newest snapshot directly (learner.last_snapshot), then follows
    posteriors = (env.from_source(flink.kafka_source(registry.name("posteriors"), group + ".posteriors", bootstrap,
                                                     start="latest"), no_wm, "posteriors")
                  .uid("rendezvous.source.posteriors"))
    topics = {t: registry.name(t) for t in ("requests", "outcomes", "posteriors", "deadletter", "results")}
    answers = (events.connect(control.union(posteriors).broadcast(POLICY_STATE))
               .process(Rendezvous(policy.to_dict(), metrics_port, bootstrap, topics, answered_before, answered_by,
                                   predecessor, checkpoint_interval_ms=flink.JobSettings().checkpoint_interval_ms),
                        output_type=flink.keyed_row_type())
               .uid("rendezvous").name("rendezvous"))
    flink.kafka_keyed_sink(env, answers, "rendezvous_results", registry.name("results"), bootstrap)
    (answers.get_side_output(REWARDS)
        .key_by(lambda _: "bandit", key_type=Types.STRING())
        .process(Learner(topics["posteriors"], bootstrap), output_type=Types.STRING())
        .uid("rendezvous.learner").name("learner")
        .sink_to(flink.kafka_sink(topics["posteriors"], bootstrap)).uid("rendezvous.learner.sink"))
