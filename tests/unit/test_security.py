"""Client security settings in each client's terms, the refusal messages, and topics.yaml's access as ACLs."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from scorestream import access, security
from scorestream.errors import UserError
from scorestream.ports import free_port
from scorestream.topics import TopicRegistry

PROPS = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "worker",
         "sasl.password": "s3cret", "ssl.ca.location": "/tmp/ca.pem"}


def test_a_properties_file_is_read_with_comments_and_the_older_mechanisms_key(tmp_path):
    path = tmp_path / "c.properties"
    path.write_text("# comment\n! also\n\nsecurity.protocol = SASL_SSL\nsasl.mechanisms=PLAIN\nsasl.password=a=b\n")
    assert security.read_properties(path) == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                                              "sasl.password": "a=b"}


def test_an_unreadable_or_malformed_file_stops_the_client(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        security.read_properties(tmp_path / "missing.properties")
    (tmp_path / "bad.properties").write_text("security.protocol\n")
    with pytest.raises(UserError, match="not key=value"):
        security.read_properties(tmp_path / "bad.properties")


def test_the_java_client_gets_a_jaas_line_and_a_pem_trust_store():
    java = security.java_properties(PROPS)
    assert java == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
                                        'username="worker" password="s3cret";',
                    "ssl.truststore.type": "PEM", "ssl.truststore.location": "/tmp/ca.pem"}
    assert security.java_properties({}) == {}
    with pytest.raises(UserError, match="no Java login module"):
        security.java_properties(PROPS | {"sasl.mechanism": "GSSAPI"})


def test_faust_gets_sasl_credentials_over_tls(tmp_path):
    from tests.unit.test_secured import a_ca
    ca = a_ca(tmp_path)
    creds = security.faust_credentials(PROPS | {"ssl.ca.location": str(ca)})
    assert (creds.username, creds.password, str(creds.mechanism.value)) == ("worker", "s3cret", "SCRAM-SHA-512")
    assert creds.ssl_context is not None
    assert security.faust_credentials({}) is None


@pytest.mark.parametrize("code, says", [
    (KafkaError._AUTHENTICATION, "refused the credentials of"),
    (KafkaError._SSL, "TLS with Kafka failed"),
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, "access to a topic"),
    (KafkaError.GROUP_AUTHORIZATION_FAILED, "access to a consumer group"),
])
def test_a_refusal_is_final_and_says_what_was_refused(code, says):
    with pytest.raises(UserError, match=says):
        security.raise_refusal(KafkaError(code, "refused"))


def test_other_errors_are_left_to_librdkafka():
    assert security.refusal(KafkaError(KafkaError._TRANSPORT, "down")) is None
    security.raise_refusal(KafkaError(KafkaError._ALL_BROKERS_DOWN, "down"))


def _allowed(acls, user, kind, operation):
    return {(a.name, a.resource_pattern_type) for a in acls
            if a.principal == f"User:{user}" and a.restype == kind and a.operation == operation}


def test_topics_yaml_grants_each_part_the_least_it_needs():
    registry = TopicRegistry.load(prefix="", environment="embedded")
    acls = access.bindings(access.load(), registry, prefix="")
    topic = ResourceType.TOPIC
    assert _allowed(acls, "worker", topic, AclOperation.WRITE) == {("scoring.scores", ResourcePatternType.LITERAL),
                                                                   ("scoring.deadletter", ResourcePatternType.LITERAL)}
    assert _allowed(acls, "worker", topic, AclOperation.READ) == {("scoring.features", ResourcePatternType.LITERAL)}
    assert ("scoring.control", ResourcePatternType.LITERAL) in _allowed(acls, "ops", topic, AclOperation.WRITE)
    writers_of_control = {a.principal for a in acls if a.name == "scoring.control" and a.operation == AclOperation.WRITE}
    assert writers_of_control == {"User:ops"}
    assert _allowed(acls, "decoy", ResourceType.TRANSACTIONAL_ID, AclOperation.WRITE) == {
        ("scorestream.decoy", ResourcePatternType.PREFIXED)}
    assert ("scorestream.score.", ResourcePatternType.PREFIXED) in _allowed(acls, "worker", ResourceType.GROUP,
                                                                          AclOperation.READ)
    assert _allowed(acls, "analyst", topic, AclOperation.WRITE) == set()


def test_a_prefix_namespaces_groups_and_transactions_as_topics():
    registry = TopicRegistry.load(prefix="t1.", environment="embedded")
    acls = access.bindings(access.load(), registry, prefix="t1.")
    names = {a.name for a in acls}
    assert "t1.scoring.results" in names and "t1.scorestream.decoy" in names and "scoring.results" not in names


def test_an_unknown_key_in_access_is_refused(tmp_path):
    path = tmp_path / "topics.yaml"
    path.write_text("topics: {}\naccess:\n  users:\n    worker: {reads: [features]}\n")
    with pytest.raises(UserError, match="unknown keys reads"):
        access.load(path)


def test_a_relocated_java_client_gets_its_own_login_module_name():
    jaas = security.java_properties(PROPS, shaded="org.apache.flink.kafka.shaded.")["sasl.jaas.config"]
    assert jaas.startswith("org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule ")


def test_ops_may_look_at_every_group_of_the_system_but_join_none():
    acls = access.bindings(access.load(), TopicRegistry.load(prefix="", environment="embedded"), prefix="")
    assert _allowed(acls, "ops", ResourceType.GROUP, AclOperation.DESCRIBE) == {
        ("scorestream.", ResourcePatternType.PREFIXED)}
    assert ("scorestream.", ResourcePatternType.PREFIXED) not in _allowed(acls, "ops", ResourceType.GROUP,
                                                                         AclOperation.READ)


def test_a_listener_that_answered_is_not_probed_again_and_one_that_is_down_is():
    """A plaintext client's error_cb asks the bootstrap whether it wants TLS when every broker is down: once it
    has an answer, never again (a broker restart would be sent a TLS hello per client and outage)."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []

    def accept_and_close() -> None:          # as a plaintext Kafka listener does with a TLS hello
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.close()

    threading.Thread(target=accept_and_close, daemon=True).start()
    down, listener = KafkaError(KafkaError._ALL_BROKERS_DOWN, "down"), {}
    for _ in range(3):
        security.raise_refusal(down, bootstrap=f"127.0.0.1:{port}", plaintext=True, listener=listener)
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    assert listener == {"tls": False} and len(accepted) == 1

    unanswered = {}
    security.raise_refusal(down, bootstrap=f"127.0.0.1:{free_port()}", plaintext=True, listener=unanswered)
    assert unanswered == {"tls": None}       # nothing listens now: asked again next time
