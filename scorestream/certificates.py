"""A local CA and the broker's certificate it signs, for the secured embedded stack (scorestream/secured.py)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scorestream.secured import BROKER_DN, write_private

VALID_DAYS = 825


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: str, issuer: str, public_key, signing_key, ca: bool, days: int = VALID_DAYS) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                      content_commitment=False, key_encipherment=False,
                                                      data_encipherment=False, key_agreement=False,
                                                      encipher_only=False, decipher_only=False), critical=True)
    else:   # the broker is reached as 127.0.0.1 or localhost: clients check the name (hostname verification)
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def make_ca(directory: Path, common_name: str = "scorestream local CA") -> tuple[Path, object, x509.Certificate]:
    """A self-signed CA in directory/ca.pem (its key in ca-key.pem); returns (path, key, certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(common_name, common_name, key.public_key(), key, ca=True)
    write_private(directory / "ca-key.pem", _pem_key(key))
    path = directory / "ca.pem"
    write_private(path, cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_broker_keystore(directory: Path, ca_key, ca_cert: x509.Certificate) -> Path:
    """directory/broker.pem: the broker's key and its certificate signed by the CA (Kafka's PEM key store)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(BROKER_DN.removeprefix("CN="), ca_cert.subject.rfc4514_string().removeprefix("CN="),
                        key.public_key(), ca_key, ca=False)
    path = directory / "broker.pem"
    write_private(path, _pem_key(key) + cert.public_bytes(serialization.Encoding.PEM)
           + ca_cert.public_bytes(serialization.Encoding.PEM))
    return path
