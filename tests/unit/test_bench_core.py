"""rendezvous.bench_core stays in step with the job's parse and core: every request of its loop is answered once."""

from rendezvous.bench_core import one_round, records
from rendezvous.policy import Policy


def test_every_request_answered_once():
    policy = Policy.load()
    inputs = records(policy, 50)
    assert all(len(scores) == len(policy.arms) + 1 for _, scores in inputs)
    micros, answered = one_round(policy, inputs)
    assert answered == 50 and micros > 0


def test_cold_caches_answer_the_same():
    policy = Policy.load()
    assert one_round(policy, records(policy, 5), cold=True)[1] == 5
