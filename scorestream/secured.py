"""The secured embedded stack (`up --secure`): a local CA, the broker's certificate, a SCRAM user per part.

Everything lives under <home>/secrets (mode 0700, never in git): `ca.pem` (the CA clients trust),
`broker.pem` (the broker's key and certificate, also its identity on the controller listener),
and one `<principal>.properties` per principal with standard librdkafka keys, which a part is given
through SCORESTREAM_KAFKA_CONFIG. What each principal may read and write is `access` in topics.yaml
(scorestream/access.py applies it); the certificates are made by scorestream/certificates.py.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from scorestream.security import read_properties

ADMIN = "admin"                   # the broker's own user (inter-broker) and the home owner's CLI: a super user
BROKER_DN = "CN=scorestream-broker"
MECHANISM = "SCRAM-SHA-512"


def secrets_dir(home: Path) -> Path:
    return home / "secrets"


def properties_file(home: Path, principal: str) -> Path:
    return secrets_dir(home) / f"{principal}.properties"


def write_private(path: Path, data: bytes | str) -> None:
    """Written readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def client_properties(principal: str, password: str, ca: Path) -> str:
    return (f"# scorestream: Kafka client settings of {principal} (librdkafka's names; SCORESTREAM_KAFKA_CONFIG)\n"
            f"security.protocol=SASL_SSL\nsasl.mechanism={MECHANISM}\n"
            f"sasl.username={principal}\nsasl.password={password}\nssl.ca.location={ca}\n")


def ensure(home: Path, principals: list[str]) -> dict[str, str]:
    """The secrets of `home`, made on first use (CA, broker key store, a password per principal, admin included);
    returns principal -> password. A principal added later gets its password and file, the rest is kept."""
    directory = secrets_dir(home)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (directory / "broker.pem").exists():
        # imported here: the images run the CLI, never make secrets, and do not ship cryptography
        from scorestream.certificates import make_broker_keystore, make_ca
        _, ca_key, ca_cert = make_ca(directory)
        make_broker_keystore(directory, ca_key, ca_cert)
    passwords = {}
    for principal in dict.fromkeys([ADMIN, *principals]):
        path = properties_file(home, principal)
        if path.exists():
            passwords[principal] = password_of(path)
        else:
            passwords[principal] = secrets.token_hex(16)
            write_private(path, client_properties(principal, passwords[principal], directory / "ca.pem"))
    return passwords


def password_of(path: Path) -> str:
    return read_properties(path)["sasl.password"]


BROKER_SECURITY = """\
# --secure: clients only on SASL_SSL (SCRAM), the controller on TLS with client certificates
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms={mechanism}
sasl.mechanism.inter.broker.protocol={mechanism}
listener.name.sasl_ssl.{mechanism_lower}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="{admin}" password="{admin_password}";
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
listener.name.controller.ssl.client.auth=required
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:{admin};User:{broker_dn}
"""


def broker_properties(home: Path, port: int, controller_port: int) -> str:
    """The lines that secure a broker's server.properties (ensure() first)."""
    directory = secrets_dir(home)
    return BROKER_SECURITY.format(port=port, controller_port=controller_port, mechanism=MECHANISM,
                                  mechanism_lower=MECHANISM.lower(), admin=ADMIN,
                                  admin_password=password_of(properties_file(home, ADMIN)),
                                  keystore=directory / "broker.pem", ca=directory / "ca.pem", broker_dn=BROKER_DN)


def scram_arguments(passwords: dict[str, str]) -> list[str]:
    """kafka-storage format's --add-scram for every user: they exist before the broker first starts."""
    args = []
    for user, password in passwords.items():
        args += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
    return args
