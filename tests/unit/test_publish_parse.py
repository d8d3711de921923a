import pytest

from scorestream.contract import ContractError
from scorestream.publish import PublishReport, lines_to_requests, parse_line


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
