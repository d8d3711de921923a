"""The pinned pair works together: apache-flink (PyPI) reads the embedded broker through the pinned connector."""

import orjson

from scorestream import flink
from scorestream.publish import publish, synthetic_requests


def test_pyflink_reads_a_topic_of_the_embedded_broker(broker, registry):
    from pyflink.common import WatermarkStrategy

    topic = registry.name("requests")
    requests = list(synthetic_requests(seed=3, count=200))
    assert publish(requests, topic, bootstrap=broker.bootstrap).delivered == 200
    env = flink.environment()
    source = flink.kafka_source(topic, "flink-pair-test", broker.bootstrap, start="earliest", bounded=True)
    stream = env.from_source(source, WatermarkStrategy.no_watermarks(), "requests")
    with stream.map(lambda value: orjson.loads(value)["request_id"]).execute_and_collect() as results:
        seen = sorted(results)
    assert seen == sorted(r.request_id for r in requests)
