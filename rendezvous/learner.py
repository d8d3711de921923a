"""The learner (Flink): every reward of the rendezvous into one set of posteriors, snapshots to Kafka.

The rendezvous is keyed by request id, and PyFlink's keyed functions cannot
write state across keys; broadcast state is writable only from the broadcast
side. So the rendezvous joins each outcome with its request's scores (keyed
state) and emits a small reward record as a side output; this operator keeps
the posteriors of every model in keyed state under one constant key
(parallelism 1: rewards are few and tiny) and, at most every SNAPSHOT_MS,
writes a full snapshot to scoring.posteriors, which the rendezvous reads back
as a broadcast input.

Why this way: rewards travel inside the job's graph, so a checkpoint covers
them with the posteriors (an outcome counts once, even after a restore); a
snapshot is the whole state, not a delta, so the at-least-once sink's
duplicates are harmless; only the snapshots, not every outcome, reach the
rendezvous's costly broadcast path. A job started without state (first start,
or a restart without a savepoint) resumes from the last snapshot on the topic.
"""

from __future__ import annotations

import logging

import orjson
from pyflink.common import Types
from pyflink.datastream.functions import KeyedProcessFunction
from pyflink.datastream.state import ValueStateDescriptor

from rendezvous.bandit import Posterior, learn
from scorestream import kafka

log = logging.getLogger(__name__)
SNAPSHOT_MS = 100           # how often at most the rendezvous gets new posteriors
KEY = "bandit"


def reward_record(scores: dict[str, float], label: int, discount: float) -> str:
    return orjson.dumps((scores, label, discount)).decode()


def snapshot(posteriors: dict[str, Posterior], outcomes: int, now: float) -> dict:
    return {"posteriors": {m: [p.alpha, p.beta] for m, p in sorted(posteriors.items())},
            "outcomes": outcomes, "ts": int(now)}


def read_snapshot(value: bytes | str | None) -> dict | None:
    """A snapshot record, or None when it is not one (counted by the caller, never fatal)."""
    if value is None:
        return None
    try:
        doc = orjson.loads(value)
        doc["posteriors"] = {str(m): (float(a), float(b)) for m, (a, b) in doc["posteriors"].items()}
        doc["outcomes"] = int(doc["outcomes"])
        return doc
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def last_snapshot(topic: str, bootstrap: str) -> dict | None:
    """The newest snapshot on the topic (a start without state resumes from it)."""
    try:
        return read_snapshot(kafka.last_value(topic, bootstrap))
    except Exception as exc:        # noqa: BLE001 - a missing topic or broker hiccup: start from the prior, say so
        log.warning("learner: no snapshot read from %s (%s): starting from the prior", topic, exc)
        return None


class Learner(KeyedProcessFunction):
    def __init__(self, posteriors_topic: str, bootstrap: str):
        self.posteriors_topic, self.bootstrap = posteriors_topic, bootstrap

    def open(self, runtime_context) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("posteriors", Types.PICKLED_BYTE_ARRAY()))
        self.resume = last_snapshot(self.posteriors_topic, self.bootstrap)
        self.posteriors: dict[str, Posterior] | None = None     # the state's copy, read once after a restore
        self.outcomes, self.timer = 0, None

    def _load(self) -> None:
        stored = self.state.value()
        if stored is None and self.resume is not None:
            stored = (self.resume["posteriors"], self.resume["outcomes"], None)
            log.info("learner: resuming from a snapshot of %d outcomes", self.resume["outcomes"])
        if stored is None:
            stored = ({}, 0, None)
        posteriors, self.outcomes, self.timer = stored
        self.posteriors = {m: Posterior(a, b) for m, (a, b) in posteriors.items()}

    def process_element(self, value, ctx):
        if self.posteriors is None:
            self._load()
        scores, label, discount = orjson.loads(value)
        learn(self.posteriors, scores, label, discount)
        self.outcomes += 1
        if self.timer is None:
            self.timer = int(ctx.timer_service().current_processing_time() + SNAPSHOT_MS)
            ctx.timer_service().register_processing_time_timer(self.timer)
        self._store()

    def on_timer(self, timestamp, ctx):
        if self.posteriors is None:
            self._load()
        self.timer = None
        self._store()
        yield orjson.dumps(snapshot(self.posteriors, self.outcomes, timestamp)).decode()

    def _store(self) -> None:
        self.state.update(({m: (p.alpha, p.beta) for m, p in self.posteriors.items()}, self.outcomes, self.timer))
