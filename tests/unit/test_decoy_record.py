import pytest

from decoy.record import ArchivedRequest
from scorestream.contract import ContractError, KafkaRecord


def test_original_headers_with_our_names_stay_with_the_original():
    original = KafkaRecord(None, None, (("archived_at", b"x"), ("h", None)), "t", 0, 5, 17)
    back = ArchivedRequest.from_record(ArchivedRequest(original, 99).to_record())
    assert back == ArchivedRequest(original, 99)


def test_a_record_without_decoy_headers_is_refused():
    with pytest.raises(ContractError, match="headers are missing"):
        ArchivedRequest.from_record(KafkaRecord(b"k", b"v", (("h", b"1"),)))
