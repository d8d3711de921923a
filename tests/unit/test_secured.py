"""The secured stack's own secrets: a CA, a broker certificate it signs, a password per user, kept private."""

from __future__ import annotations

import stat

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from scorestream import certificates, secured
from scorestream.security import read_properties


def a_ca(directory):
    path, _, _ = certificates.make_ca(directory)
    return path


def test_secrets_are_made_once_and_readable_by_their_owner_only(tmp_path):
    first = secured.ensure(tmp_path, ["worker", "decoy"])
    assert set(first) == {"admin", "worker", "decoy"} and len(set(first.values())) == 3
    directory = secured.secrets_dir(tmp_path)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert secured.ensure(tmp_path, ["worker", "decoy", "canary"]) == first | {"canary": secured.password_of(
        secured.properties_file(tmp_path, "canary"))}
    props = read_properties(secured.properties_file(tmp_path, "worker"))
    assert props == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "worker",
                     "sasl.password": first["worker"], "ssl.ca.location": str(directory / "ca.pem")}


def test_the_broker_certificate_is_signed_by_the_ca_for_the_loopback_address(tmp_path):
    secured.ensure(tmp_path, [])
    directory = secured.secrets_dir(tmp_path)
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    chain = x509.load_pem_x509_certificates((directory / "broker.pem").read_bytes())
    broker = chain[0]
    broker.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert broker.subject.rfc4514_string() == secured.BROKER_DN
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


def test_the_broker_listens_on_sasl_ssl_only_with_the_authorizer(tmp_path):
    secured.ensure(tmp_path, [])
    props = secured.broker_properties(tmp_path, 9092, 9093)
    assert "listeners=SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in props
    assert "PLAINTEXT" not in props
    assert "allow.everyone.if.no.acl.found=false" in props and "StandardAuthorizer" in props
    assert "listener.name.controller.ssl.client.auth=required" in props
