"""decoy.archiver.bounded: a librdkafka call that misses its own timeout for good is given up, not waited on."""

import threading

import pytest

from decoy.archiver import CallHung, bounded


def test_a_call_that_returns_gives_its_value():
    assert bounded(lambda x, timeout: x * 2, 21, 1.0) == 42


def test_a_call_that_raises_raises_in_the_caller():
    def fails(timeout):
        raise ValueError("broker says no")

    with pytest.raises(ValueError, match="broker says no"):
        bounded(fails, 1.0)


def test_a_call_that_never_returns_is_given_up_after_its_timeout_and_the_margin():
    release = threading.Event()

    def send_offsets_to_transaction(timeout):       # as librdkafka issue #5511: the timeout is not kept
        release.wait()

    with pytest.raises(CallHung, match="send_offsets_to_transaction did not return"):
        bounded(send_offsets_to_transaction, 0.05, margin_s=0.05)
    release.set()
