"""The bare-Kafka floor of `scorestream bench`, and the load it is measured with, on the real broker."""

from __future__ import annotations

from scorestream.bench import floor


def test_floor_answers_every_counted_request_once_and_leaves_out_the_lead_in(broker):
    report = floor(rate=100, duration_s=2, sla_ms=1000, bootstrap=broker.bootstrap)
    # the lead-in (1 s at the same rate) went through the same hops but is not counted
    assert report.published == 200
    assert report.answered == 200 and report.duplicates == 0
    assert 1.5 < report.seconds < 3.0        # the counted part only
    assert report.percentile(50) < 1000
