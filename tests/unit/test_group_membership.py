"""kafka.GroupMembership: a consumer out of its group past the limit is taken for stuck, and only then.
kafka.Recoveries: how many recoveries from a fatal error are too many."""

from scorestream.kafka import GroupMembership


def test_a_subscribed_consumer_is_out_until_its_first_assignment():
    m = GroupMembership(limit_s=30.0)
    start = m.out_since
    assert not m.stuck(start + 29.0)
    assert m.stuck(start + 31.0)
    m.joined()
    assert not m.stuck(start + 1000.0)
    assert m.out_for() == 0.0


def test_out_is_counted_from_the_first_loss_not_from_later_revocations():
    m = GroupMembership(limit_s=30.0)
    m.joined()
    m.left(at=100.0)
    m.left(at=120.0)            # revoked again while out: still out since 100
    assert m.out_since == 100.0
    assert m.stuck(131.0) and m.out_for(131.0) == 31.0


def test_a_rejoin_ends_the_count():
    m = GroupMembership(limit_s=30.0)
    m.joined()
    m.left(at=100.0)
    m.joined()
    assert not m.stuck(200.0)
    m.left(at=190.0)
    assert not m.stuck(200.0) and m.stuck(221.0)


def test_recoveries_are_too_many_only_when_close_together():
    """A static member is fenced once per broker restart: a part outliving many restarts keeps going; another
    member with its id fences it every few seconds, and that stops it."""
    from scorestream.kafka import Recoveries

    restarts = Recoveries(limit=10, window_s=600.0)
    assert not any(restarts.add(now=i * 60.0) for i in range(50))     # one a minute, for 50 minutes
    assert restarts.total == 50 and restarts.recent() == 10
    twin = Recoveries(limit=10, window_s=600.0)
    assert [twin.add(now=i * 5.0) for i in range(11)] == [False] * 10 + [True]
