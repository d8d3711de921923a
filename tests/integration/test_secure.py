"""`scorestream up --secure`: Kafka on SASL_SSL only, a SCRAM user and least-privilege ACLs per part.

The whole system answers requests with every part logged in as itself, while Kafka refuses, each with a
clear message and a non-zero exit: an anonymous client, a wrong password, an untrusted certificate, and a
worker's credentials writing the results topic. Nothing falls back to plaintext.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from scorestream import certificates, secured
from scorestream.load import run_load
from scorestream.security import read_properties
from scorestream.topics import TopicRegistry
from tests.integration.test_system import system_home
from tests.readback import read_keys

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]    # a whole system of its own: `make test-slow`


@pytest.fixture(scope="module")
def secure_system(tmp_path_factory):
    home, policy, port, base_cli = system_home(tmp_path_factory, "secure")

    def cli(*args, config: Path | None = None, timeout=300):
        return base_cli(*args, timeout=timeout, env={"SCORESTREAM_KAFKA_CONFIG": str(config)} if config else None)

    started = cli("up", "--secure", "--policy", str(policy), "--warm-up", "30", "--warm-up-rate", "50")
    assert started.returncode == 0, started.stdout + started.stderr
    yield home, f"127.0.0.1:{port}", cli
    stopped = cli("down")
    assert stopped.returncode == 0 and "kafka" in stopped.stdout


def test_the_broker_listens_on_sasl_ssl_only(secure_system):
    home, bootstrap, _ = secure_system
    server = (home / "kafka" / "server.properties").read_text()
    listeners = next(line for line in server.splitlines() if line.startswith("listeners="))
    assert listeners == f"listeners=SASL_SSL://{bootstrap},CONTROLLER://127.0.0.1:{int(bootstrap.rsplit(':')[1]) + 1}"
    assert "PLAINTEXT" not in server


def test_every_part_logs_in_as_itself_and_the_system_answers_a_producer(secure_system, monkeypatch):
    home, bootstrap, cli = secure_system
    env_of = {}
    for pid_file in (home / "run").glob("*.pid"):
        if pid_file.stem != "kafka":
            pid = pid_file.read_text().split()[0]
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            env_of[pid_file.stem] = next((e.split(b"=", 1)[1].decode() for e in environ
                                          if e.startswith(b"SCORESTREAM_KAFKA_CONFIG=")), None)
    users = {name: read_properties(Path(path))["sasl.username"] for name, path in env_of.items()}
    assert users == {"flink.extract": "extract", "flink.rendezvous": "rendezvous", "decoy": "decoy",
                     "canary": "canary", "score.fraud_lr@1": "worker", "score.fraud_xgb@2": "worker",
                     "score.fraud_xgb@3": "worker"}

    # a producer's own user: it may write requests and read results, nothing else
    monkeypatch.setenv("SCORESTREAM_KAFKA_CONFIG", str(secured.properties_file(home, "producer")))
    registry = TopicRegistry.load(prefix="", environment="embedded")
    report = run_load(registry.name("requests"), registry.name("results"), 50, 10, 400, bootstrap, drain_s=20)
    print(f"secured system: {report.answered} of {report.published} answered, {report.duplicates} twice, "
          f"{report.within_sla:.1%} within the 400 ms SLA")
    assert report.published == 500 and report.answered == report.published and report.duplicates == 0

    monkeypatch.setenv("SCORESTREAM_KAFKA_CONFIG", str(secured.properties_file(home, secured.ADMIN)))
    status = cli("status")
    assert status.returncode == 0 and "stopped" not in status.stdout, status.stdout


def test_an_anonymous_client_sees_no_topic(secure_system, tmp_path):
    home, bootstrap, cli = secure_system
    for anonymous in ({}, {"security.protocol": "SSL", "ssl.ca.location": str(secured.secrets_dir(home) / "ca.pem")}):
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0} | anonymous)
        with pytest.raises(Exception):
            admin.list_topics(timeout=5)
    plain = tmp_path / "plain.properties"
    plain.write_text("security.protocol=PLAINTEXT\n")
    done = cli("publish", "--synthetic", "--count", "5", config=plain, timeout=120)
    assert done.returncode != 0
    assert "wants TLS and this client has no security settings" in " ".join(done.stderr.split()), done.stderr


def test_a_wrong_password_and_an_untrusted_certificate_are_refused(secure_system, tmp_path):
    home, _, cli = secure_system
    producer = secured.properties_file(home, "producer").read_text()
    wrong = tmp_path / "wrong.properties"
    wrong.write_text("\n".join("sasl.password=not-the-password" if line.startswith("sasl.password=") else line
                               for line in producer.splitlines()))
    done = cli("publish", "--synthetic", "--count", "5", config=wrong, timeout=120)
    assert done.returncode != 0
    assert "Kafka refused the credentials of producer" in " ".join(done.stderr.split()), done.stderr

    other_ca, _, _ = certificates.make_ca(tmp_path / "other")
    untrusted = tmp_path / "untrusted.properties"
    untrusted.write_text("\n".join(f"ssl.ca.location={other_ca}" if line.startswith("ssl.ca.location=") else line
                                   for line in producer.splitlines()))
    done = cli("publish", "--synthetic", "--count", "5", config=untrusted, timeout=120)
    assert done.returncode != 0
    said = " ".join(done.stderr.split())
    assert "TLS with Kafka failed" in said and "certificate verify failed" in said, done.stderr


def test_a_worker_writing_the_results_is_refused_and_writes_nothing(secure_system, monkeypatch):
    home, bootstrap, cli = secure_system
    worker = secured.properties_file(home, "worker")
    done = cli("publish", "--synthetic", "--count", "5", "--seed", "4242", "--topic", "results", config=worker,
               timeout=120)
    assert done.returncode != 0
    said = " ".join((done.stdout + done.stderr).split())
    assert "delivered 0, failed 5" in said
    assert "Kafka refused worker access to topic scoring.results" in said, said
    # ops' promote alone writes the policy: with a worker's credentials it stops before changing anything
    policy = str(home / "policy.yaml")
    done = cli("promote", policy, "--force", config=worker, timeout=120)
    assert done.returncode != 0 and "worker may not describe" in " ".join(done.stderr.split()), done.stderr
    done = cli("promote", policy, "--preview", config=secured.properties_file(home, "ops"), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    monkeypatch.setenv("SCORESTREAM_KAFKA_CONFIG", str(secured.properties_file(home, secured.ADMIN)))
    from scorestream.publish import synthetic_requests
    ids = {r.request_id for r in synthetic_requests(4242, 5)}
    assert not ids & {key.decode() for key in read_keys("scoring.results", {}, bootstrap) if key}
