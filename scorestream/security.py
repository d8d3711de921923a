"""How each kind of client we run reaches a secured Kafka, from one set of standard librdkafka properties.

A part's settings come from the properties file SCORESTREAM_KAFKA_CONFIG names (librdkafka's keys:
security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, ...), else from the
embedded stack's own admin file when it runs `--secure`, else none: plaintext. The Flink jobs' Java
clients and the canary's faust (aiokafka) get the same settings in their own terms. Nothing falls back
to plaintext: a file that cannot be read stops the client.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from scorestream.errors import UserError
from scorestream.settings import KafkaSettings, StackSettings

# librdkafka keys that the Java client spells the same way
_SAME_IN_JAVA = ("security.protocol", "sasl.mechanism", "ssl.endpoint.identification.algorithm")
_JAAS_MODULES = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
                 "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
                 "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


def read_properties(path: Path) -> dict[str, str]:
    """key=value lines of a Java-style properties file (# and ! comments, blank lines skipped)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UserError(f"cannot read the Kafka client settings {path} ({exc.strerror}): fix "
                        f"SCORESTREAM_KAFKA_CONFIG or the file's permissions") from None
    props = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, sep, value = line.partition("=")
            if not sep:
                raise UserError(f"{path}: {line!r} is not key=value")
            props[key.strip()] = value.strip()
    if "sasl.mechanisms" in props:           # librdkafka's older spelling
        props.setdefault("sasl.mechanism", props.pop("sasl.mechanisms"))
    return props


def config_file() -> Path | None:
    """SCORESTREAM_KAFKA_CONFIG, else the admin file of the embedded stack when it runs --secure, else None."""
    given = KafkaSettings().kafka_config
    if given:
        return given
    stack = StackSettings()
    if stack.state().get("secure"):
        from scorestream import secured
        return secured.properties_file(stack.home, secured.ADMIN)
    return None


def client_properties() -> dict[str, str]:
    """This client's security settings in librdkafka's keys ({} for plaintext)."""
    path = config_file()
    return read_properties(path) if path else {}


def principal() -> str:
    """Who this client is, for messages: its SASL user, or anonymous."""
    return client_properties().get("sasl.username", "anonymous (no credentials)")


def java_properties(props: dict[str, str] | None = None, shaded: str = "") -> dict[str, str]:
    """The same settings for Kafka's Java client. shaded: the package prefix of a Kafka client relocated
    inside a jar (the Flink connector's), which the login module's class name must carry."""
    props = client_properties() if props is None else props
    java = {k: v for k, v in props.items() if k in _SAME_IN_JAVA}
    mechanism = props.get("sasl.mechanism", "")
    if "sasl.username" in props:
        module = _JAAS_MODULES.get(mechanism.upper())
        if module is None:
            raise UserError(f"sasl.mechanism {mechanism!r} has no Java login module here: use one of "
                            f"{', '.join(_JAAS_MODULES)}")
        java["sasl.jaas.config"] = (f'{shaded}{module} required username="{props["sasl.username"]}" '
                                    f'password="{props.get("sasl.password", "")}";')
    if "ssl.ca.location" in props:
        java |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": props["ssl.ca.location"]}
    return java


def faust_credentials(props: dict[str, str] | None = None):
    """faust's broker_credentials for the same settings (None: plaintext)."""
    import faust

    props = client_properties() if props is None else props
    protocol = props.get("security.protocol", "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=props.get("ssl.ca.location"))
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=props.get("sasl.username"), password=props.get("sasl.password"),
                                 ssl_context=context if protocol == "SASL_SSL" else None,
                                 mechanism=props.get("sasl.mechanism", "PLAIN").upper())


_REFUSED = {"TOPIC_AUTHORIZATION_FAILED": "a topic", "GROUP_AUTHORIZATION_FAILED": "a consumer group",
            "TRANSACTIONAL_ID_AUTHORIZATION_FAILED": "a transactional id",
            "CLUSTER_AUTHORIZATION_FAILED": "a cluster operation"}


def refusal(error, resource: str = "") -> str | None:
    """What to tell a user when Kafka refused this client (a KafkaError), None when it is another error.
    resource: what was asked for when the error came with a record (e.g. "topic scoring.results")."""
    name = error.name()
    where = f" (settings: {config_file() or 'none, plaintext: set SCORESTREAM_KAFKA_CONFIG'})"
    if name == "_AUTHENTICATION":
        return (f"Kafka refused the credentials of {principal()}: {error.str()}; check sasl.username and "
                f"sasl.password{where}")
    if name == "_SSL":
        return f"TLS with Kafka failed: {error.str()}; ssl.ca.location must name the broker's CA{where}"
    if name in _REFUSED:
        return (f"Kafka refused {principal()} access to {resource or _REFUSED[name]}: {error.str()} "
                f"(its ACLs do not allow it){where}")
    return None


def explain(error) -> str:
    """A KafkaError for a user: a refusal as refusal() says it; a topic that looks missing to a client with
    credentials may be one its ACLs hide (Kafka does not tell the two apart)."""
    message = refusal(error)
    if message:
        return message
    message = f"Kafka: {error.str()}"
    if error.name() in ("_UNKNOWN_PARTITION", "_UNKNOWN_TOPIC", "UNKNOWN_TOPIC_OR_PART") and client_properties():
        message += (f". On a secured Kafka a topic that {principal()} may not describe looks missing: check its "
                    f"ACLs (topics.yaml's access)")
    return message


def speaks_tls(bootstrap: str, timeout_s: float = 2.0) -> bool | None:
    """Whether the first server of bootstrap answers a TLS handshake (its certificate not checked: only whether
    the listener is TLS at all; a plaintext Kafka listener closes the connection instead); None when nothing
    accepts the connection (a broker that is down answers neither way)."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout_s)
    except (OSError, ValueError):
        return None
    with sock:
        try:
            with context.wrap_socket(sock, server_hostname=host):
                return True
        except (OSError, ValueError):
            return False


def raise_refusal(error, bootstrap: str = "", plaintext: bool = False, listener: dict | None = None) -> None:
    """librdkafka's error_cb for every client: a refusal is final (never retried, never plaintext), the rest
    are retried by librdkafka and logged by it. A plaintext client that a TLS listener drops is told so.

    listener: this client's memory of the answer, so that a listener that answered once is not probed again (a
    probe stalls the client's poll up to 2 s, and a plaintext broker logs each TLS hello as an error)."""
    message = refusal(error)
    known = {} if listener is None else listener
    if message is None and plaintext and error.name() == "_ALL_BROKERS_DOWN" and bootstrap:
        if known.get("tls") is None:
            known["tls"] = speaks_tls(bootstrap)
        if known["tls"]:
            message = (f"the broker at {bootstrap} wants TLS and this client has no security settings: Kafka "
                       f"refuses anonymous clients there. Set SCORESTREAM_KAFKA_CONFIG to a properties file with "
                       f"security.protocol, sasl.* and ssl.ca.location (docs/operations.md)")
    if message is not None:
        raise UserError(message)
