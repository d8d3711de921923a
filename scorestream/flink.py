"""PyFlink plumbing shared by the Flink jobs: the environment and Kafka sources/sinks.

The jobs run in PyFlink's thread mode (Python functions embedded in the JVM
through pemja). The embedded interpreter does not see this virtualenv by
itself, so its site-packages go on PYTHONPATH before the JVM starts.
"""

from __future__ import annotations

import os
import signal
import site
import sys
import time
from pathlib import Path

from scorestream.errors import UserError
from pydantic_settings import SettingsConfigDict

from scorestream.settings import PROJECT_ROOT, StackSettings, _Settings


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


def environment(config: dict[str, str] | None = None, parallelism: int = 1, name: str = "flink"):
    """A StreamExecutionEnvironment in thread mode with the Kafka connector on the classpath.

    The JVM's own log goes to <home>/logs/<name>/ (PyFlink's default is inside site-packages).
    """
    os.environ["PYTHONPATH"] = _python_path()   # read by the JVM that pyflink starts next
    log_dir = StackSettings().home / "logs" / name
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(log_dir))
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    conf = Configuration()
    settings = {
        "python.execution-mode": "thread",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "pipeline.jars": connector_jar().as_uri(),
        "rest.port": "0",                                # several local jobs side by side
        "classloader.check-leaked-classloader": "false",  # the Kafka admin thread outlives a bounded job
    } | (config or {})
    for key, value in settings.items():
        conf.set_string(key, str(value))
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(parallelism)
    return env


def kafka_source(topic: str | list[str], group: str, bootstrap: str, start: str = "committed", bounded: bool = False,
                 properties: dict | None = None):
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
    for key, value in (properties or {}).items():
        builder = builder.set_property(key, str(value))
    if bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    return builder.build()


def kafka_sink(topic: str, bootstrap: str, linger_ms: int = 1):
    """A KafkaSink of value strings, at-least-once (flushed on every checkpoint)."""
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    serializer = (KafkaRecordSerializationSchema.builder().set_topic(topic)
                  .set_value_serialization_schema(SimpleStringSchema()).build())
    return (KafkaSink.builder().set_bootstrap_servers(bootstrap).set_record_serializer(serializer)
            .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
            .set_property("linger.ms", str(linger_ms)).build())


class JobSettings(_Settings):
    """Latency knobs of the Flink jobs (SCORESTREAM_FLINK_*); the defaults are measured, see docs/benchmarks.md."""

    model_config = SettingsConfigDict(env_prefix="SCORESTREAM_FLINK_", frozen=True, extra="ignore")
    buffer_timeout_ms: int = 5            # Flink's default of 100 ms would eat the SLA; 1 is faster only on an idle host
    bundle_size: int = 100                # Python records per bundle
    bundle_time_ms: int = 5               # longest a record waits in a bundle
    checkpoint_interval_ms: int = 5000    # source offsets are committed on checkpoints

    def config(self) -> dict[str, str]:
        return {"python.fn-execution.bundle.size": str(self.bundle_size),
                "python.fn-execution.bundle.time": str(self.bundle_time_ms),
                "execution.checkpointing.interval": f"{self.checkpoint_interval_ms} ms"}


def run_job(name: str, build) -> None:
    """Build a job on a fresh environment with the latency settings and run it until cancelled or stopped."""
    settings = JobSettings()
    env = environment(settings.config(), name=f"flink.{name}")
    env.set_buffer_timeout(settings.buffer_timeout_ms)
    build(env)
    ready = StackSettings().home / "run" / f"flink.{name}.job"     # what a container's health check looks at
    ready.unlink(missing_ok=True)
    client = env.execute_async(name)
    print(f"{name}: job {client.get_job_id()} submitted", flush=True)
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.write_text(str(client.get_job_id()))
    # wait in Python, not in a Java call, so SIGTERM is handled at once: cancel the job, then exit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while not client.get_job_status().result().is_globally_terminal_state():
            time.sleep(1.0)
    finally:
        client.cancel()
    raise UserError(f"{name}: the job ended with status {client.get_job_status().result()}")
