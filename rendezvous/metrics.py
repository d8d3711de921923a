"""What on-call watches of the rendezvous (Prometheus, served from inside the Flink job)."""

from prometheus_client import Counter, Gauge, Histogram

from scorestream.metrics import LATENCY_BUCKETS

ANSWERS = Counter("scorestream_rendezvous_answers_total", "Answers by rule and model", ["rule", "model"])
REJECTED = Counter("scorestream_rendezvous_rejected_total", "Requests answered as rejected, by the stage that "
                   "refused them and the field that failed", ["stage", "field"])
LATENCY = Histogram("scorestream_rendezvous_latency_seconds", "From request ts to answer", buckets=LATENCY_BUCKETS)
CANARY_DELTA = Histogram("scorestream_rendezvous_canary_delta", "Answer minus canary score",
                         buckets=(-1, -0.5, -0.2, -0.1, -0.05, -0.01, 0, 0.01, 0.05, 0.1, 0.2, 0.5, 1))
EVENTS = Counter("scorestream_rendezvous_events_total",
                 "Input not answered from: late_score (kept for the outcome), duplicate_score, duplicate_request, "
                 "late_rejection, orphan_scores, malformed",
                 ["event"])
LIVE_REQUESTS = Gauge("scorestream_rendezvous_live_requests", "Requests held in keyed state")
POLICY_VERSION = Gauge("scorestream_rendezvous_policy_version", "Version of the policy in force")
OUTCOMES = Counter("scorestream_rendezvous_outcomes_total",
                   "Outcomes read: joined (with the request's scores), duplicate (a second one for a request), "
                   "unmatched (past the request's ts + outcome_horizon_s, or an id never seen), invalid "
                   "(dead-lettered)", ["result"])
OUTCOMES_LEARNED = Gauge("scorestream_rendezvous_outcomes_learned",
                         "Outcomes in the posteriors the bandit chooses with (the learner's count)")
POSTERIOR_MEAN = Gauge("scorestream_rendezvous_posterior_mean",
                       "Each model's Beta posterior mean: about 1 - its Brier score on recent outcomes", ["model"])
