import pytest

from scorestream.contract import ContractError
from scorestream.publish import (PublishReport, lines_to_outcomes, lines_to_requests, parse_line, parse_outcome_line,
                                 synthetic_requests)


def test_full_request_is_kept():
    r = parse_line(b'{"request_id": "a", "ts": 5, "payload": {"x": 1}}', now_ms=9)
    assert (r.request_id, r.ts, r.payload) == ("a", 5, {"x": 1})


def test_bare_payload_gets_id_and_ts():
    r = parse_line(b'{"amount": 3}', now_ms=9)
    assert r.payload == {"amount": 3} and r.ts == 9 and r.request_id


@pytest.mark.parametrize("line", [b"{oops", b"[1]", b'{"payload": 3}', b'{"request_id": 1, "payload": {}}'])
def test_bad_lines_raise(line):
    with pytest.raises(ContractError):
        parse_line(line, now_ms=0)


def test_bad_lines_are_reported_by_number():
    report = PublishReport()
    lines = [b'{"a": 1}\n', b"\n", b"nope\n", b'{"b": 2}\n']
    good = list(lines_to_requests(lines, report))
    assert len(good) == 2
    assert [n for n, _ in report.bad_lines] == [3]


def test_outcome_line_gets_ts():
    o = parse_outcome_line(b'{"request_id": "a", "label": 1}', now_ms=9)
    assert (o.request_id, o.label, o.ts) == ("a", 1, 9)


@pytest.mark.parametrize("line", [b"{oops", b"[1]", b'{"request_id": "a", "label": 2}', b'{"request_id": "a"}',
                                  b'{"request_id": "a", "label": true}', b'{"request_id": "a", "label": "1"}',
                                  b'{"label": 0}'])
def test_bad_outcome_lines_raise(line):
    with pytest.raises(ContractError):
        parse_outcome_line(line, now_ms=0)


def test_bad_outcome_lines_are_reported_by_number():
    report = PublishReport()
    lines = [b'{"request_id": "a", "label": 0}\n', b'{"request_id": "b", "label": 0.5}\n', b"\n",
             b'{"request_id": "c", "label": 1, "ts": 3}\n']
    assert [o.request_id for o in lines_to_outcomes(lines, report)] == ["a", "c"]
    assert [n for n, _ in report.bad_lines] == [2]


def test_synthetic_labels_are_the_generators():
    from scorestream.synthetic import TransactionGenerator
    labels: dict[str, int] = {}
    requests = list(synthetic_requests(4, 50, "new", labels))
    truth = {s.request_id: s.label for s in TransactionGenerator(4, "new").batch(4096)[:50]}
    assert labels == truth and [r.request_id for r in requests] == list(truth)
