"""Settings of the shared core, read from SCORESTREAM_* environment variables.

One frozen class per concern; every CLI flag has an environment twin through
click's auto_envvar_prefix, and these classes give the defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Every JVM of the system (the broker, the Flink jobs) runs G1 with a pause goal of 20 ms, not its default 200:
# at 1,000 requests/s the young collections of the broker and the rendezvous (20-50 ms each, every few seconds)
# held answers past the SLA; at the same CPU, p99 fell from 158-458 to 94-153 ms (docs/benchmarks.md)
JVM_GC_ARGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20")


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCORESTREAM_", frozen=True, extra="ignore")


class StackSettings(_Settings):
    """Where the embedded stack keeps its state and how it starts the broker."""

    home: Path = PROJECT_ROOT / ".scorestream"
    jars_dir: Path = PROJECT_ROOT / ".scorestream" / "jars"
    kafka_port: int = 9092
    kafka_heap: str = "1g"
    brokers: int = 1                  # nodes of the embedded Kafka: 1, or a local cluster of 3 (up --brokers 3)
    secure: bool = False              # SASL_SSL with SCRAM users and ACLs per part (up --secure, scorestream/secured.py)
    ready_timeout_s: float = 60.0
    metrics_port_base: int = 9400     # rendezvous here, decoy + 1, workers from + 2

    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    def state(self) -> dict:
        """What `up` recorded of the running stack (bootstrap, brokers, flink, secure); {} when nothing runs."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}


class KafkaSettings(_Settings):
    """How clients reach Kafka and which topics they use."""

    bootstrap_servers: str = ""
    # A properties file of librdkafka's security settings (security.protocol, sasl.*, ssl.ca.location) for a
    # secured Kafka; unset: the embedded stack's own when it runs --secure, else plaintext (scorestream/security.py)
    kafka_config: Path | None = None
    topic_prefix: str = ""
    topics_file: Path = PROJECT_ROOT / "topics.yaml"
    # How long the broker may hold a fetch of a Flink job's reader on the answer's path to gather more records
    # (the workers have their own, WorkerSettings.fetch_wait_ms).
    # 0 wakes every consumer on every record: the broker's CPU then goes up with readers x records.
    fetch_wait_ms: int = 5
    # Which replication of topics.yaml applies: embedded (one broker) or cluster; empty: what `up` started.
    kafka_environment: str = ""

    def environment(self) -> str:
        """embedded or cluster: SCORESTREAM_KAFKA_ENVIRONMENT, else what `up` started (topics.yaml's replication)."""
        if self.kafka_environment:
            return self.kafka_environment
        return "cluster" if StackSettings().state().get("brokers", 1) > 1 else "embedded"

    def bootstrap(self) -> str:
        """The configured servers, else the embedded broker's, else localhost:9092."""
        if self.bootstrap_servers:
            return self.bootstrap_servers
        stack = StackSettings()
        return stack.state().get("bootstrap") or f"127.0.0.1:{stack.kafka_port}"
