"""PyFlink plumbing shared by the Flink jobs: the environment and Kafka sources/sinks.

The jobs run in PyFlink's thread mode (Python functions embedded in the JVM
through pemja). The embedded interpreter does not see this virtualenv by
itself, so its site-packages go on PYTHONPATH before the JVM starts.
"""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

from scorestream.errors import UserError
from scorestream.settings import PROJECT_ROOT, StackSettings


def connector_jar(settings: StackSettings | None = None) -> Path:
    """The Flink Kafka connector jar fetched through pom.xml."""
    settings = settings or StackSettings()
    jars = sorted((settings.jars_dir / "flink").glob("flink-sql-connector-kafka-*.jar"))
    if not jars:
        raise UserError(f"the Flink Kafka connector jar is missing in {settings.jars_dir / 'flink'}: run `make jars`")
    return jars[-1]


def _python_path() -> str:
    paths = [*site.getsitepackages(), str(PROJECT_ROOT)]
    current = os.environ.get("PYTHONPATH")
    return os.pathsep.join(paths + ([current] if current else []))


def environment(config: dict[str, str] | None = None, parallelism: int = 1):
    """A StreamExecutionEnvironment in thread mode with the Kafka connector on the classpath."""
    os.environ["PYTHONPATH"] = _python_path()   # read by the JVM that pyflink starts next
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    conf = Configuration()
    settings = {
        "python.execution-mode": "thread",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "pipeline.jars": connector_jar().as_uri(),
    } | (config or {})
    for key, value in settings.items():
        conf.set_string(key, str(value))
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(parallelism)
    return env


def kafka_source(topic: str | list[str], group: str, bootstrap: str, start: str = "committed", bounded: bool = False):
    """A KafkaSource of value strings. start: earliest | latest | committed (earliest when none)."""
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.kafka import KafkaOffsetResetStrategy, KafkaOffsetsInitializer, KafkaSource

    offsets = {
        "earliest": KafkaOffsetsInitializer.earliest,
        "latest": KafkaOffsetsInitializer.latest,
        "committed": lambda: KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST),
    }[start]()
    builder = (KafkaSource.builder().set_bootstrap_servers(bootstrap)
               .set_topics(*([topic] if isinstance(topic, str) else topic))
               .set_group_id(group).set_starting_offsets(offsets)
               .set_value_only_deserializer(SimpleStringSchema())
               .set_property("isolation.level", "read_committed"))
    if bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    return builder.build()
