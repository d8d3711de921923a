"""The offsets the canary monitor stores after a batch of its inputs (canary/app.py)."""

from confluent_kafka import KafkaError, Message, TopicPartition

from canary.app import last_offsets


def test_one_past_the_last_record_of_each_partition_and_errors_left_out():
    records = [Message(topic="scores", partition=0, offset=7), Message(topic="scores", partition=1, offset=3),
               Message(topic="scores", partition=0, offset=8), Message(topic="results", partition=0, offset=2),
               Message(topic="scores", partition=1, offset=9, error=KafkaError(KafkaError._TRANSPORT))]
    assert sorted(last_offsets(records), key=lambda tp: (tp.topic, tp.partition)) == [
        TopicPartition("results", 0, 3), TopicPartition("scores", 0, 9), TopicPartition("scores", 1, 4)]


def test_nothing_to_store_after_no_record():
    assert last_offsets([]) == []
