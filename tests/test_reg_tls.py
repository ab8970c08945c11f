"""TLS against docker-registry serving a certificate made here: `regcert`, `insecure`,
verification failures, certs.d, and client certificates (mTLS)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from regbot.errors import TransportError
from regbot.hosts import TLS_ENABLED, TLS_INSECURE, Host
from tests.reg_helpers import make_scheme, ref
from tests.support.registry import start_registry


def _pem_key(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert(subject: str, key, issuer_name, issuer_key, *, ca=False, server=False, client=False):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


class PKI:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM."""

    def __init__(self, directory: Path) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("regbot test CA", ca_key, None, None, ca=True)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _cert("127.0.0.1", server_key, ca.subject, ca_key, server=True)
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = _cert("regbot client", client_key, ca.subject, ca_key, client=True)
        pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
        self.ca_pem, self.client_pem, self.client_key = pem(ca), pem(client), _pem_key(client_key)
        self.dir = directory
        for name, text in (("ca.pem", self.ca_pem), ("server.pem", pem(server)),
                           ("server.key", _pem_key(server_key))):
            (directory / name).write_text(text)

    def tls_config(self, mtls: bool = False) -> str:
        text = f"tls:\n  certificate: {self.dir / 'server.pem'}\n  key: {self.dir / 'server.key'}\n"
        if mtls:
            text += f"  clientcas:\n    - {self.dir / 'ca.pem'}\n"
        return text


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_registry(pki):
    reg = start_registry(http_extra=pki.tls_config())
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def mtls_registry(pki):
    reg = start_registry(http_extra=pki.tls_config(mtls=True))
    yield reg
    reg.stop()


def _roundtrip(scheme, host: str) -> None:
    target = ref(host, "tls/repo")
    scheme.ping(target)
    from regbot.types.descriptor import Descriptor, digest_of

    data = os.urandom(3000)
    stored = scheme.blob_put(target, Descriptor("x", digest_of(data), len(data)), data)
    assert scheme.blob_get(target, stored.digest).read_all() == data


def test_regcert_is_trusted(tls_registry, pki):
    _roundtrip(make_scheme([Host(tls_registry.host, regcert=pki.ca_pem)]), tls_registry.host)


def test_insecure_skips_verification(tls_registry):
    _roundtrip(make_scheme([Host(tls_registry.host, tls=TLS_INSECURE)]), tls_registry.host)


def test_unknown_certificate_fails_clearly(tls_registry):
    scheme = make_scheme([Host(tls_registry.host, tls=TLS_ENABLED)], retries=3, backoff_base=1.0)
    with pytest.raises(TransportError, match="certificate verify failed") as info:
        scheme.ping(ref(tls_registry.host, "tls/repo"))
    assert tls_registry.host in str(info.value)
    assert "attempts" not in str(info.value)  # not retried: a bad certificate stays bad
    with pytest.raises(TransportError, match="regcert"):
        make_scheme([Host(tls_registry.host, regcert="not a certificate")]).ping(ref(tls_registry.host, "x/y"))


def test_certs_d_ca_and_client_pair(tls_registry, mtls_registry, pki, tmp_path):
    certs = tmp_path / "certs.d"
    for reg in (tls_registry, mtls_registry):
        (certs / reg.host).mkdir(parents=True)
        (certs / reg.host / "ca.crt").write_text(pki.ca_pem)
    (certs / mtls_registry.host / "client.cert").write_text(pki.client_pem)
    (certs / mtls_registry.host / "client.key").write_text(pki.client_key)
    scheme = make_scheme([], skip_docker_config=False, certs_dir=str(certs),
                         docker_config_dir=str(tmp_path / "no-docker"))
    _roundtrip(scheme, tls_registry.host)
    _roundtrip(scheme, mtls_registry.host)
    skipping = make_scheme([], skip_docker_config=True, certs_dir=str(certs))
    with pytest.raises(TransportError, match="certificate verify failed"):
        skipping.ping(ref(tls_registry.host, "tls/repo"))


def test_client_certificate_from_config(mtls_registry, pki):
    before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("regbot-mtls-")}
    with_pair = make_scheme([Host(mtls_registry.host, regcert=pki.ca_pem,
                                  client_cert=pki.client_pem, client_key=pki.client_key)])
    _roundtrip(with_pair, mtls_registry.host)
    after = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("regbot-mtls-")}
    assert after == before  # the key files were removed once loaded
    without = make_scheme([Host(mtls_registry.host, regcert=pki.ca_pem)], retries=0)
    with pytest.raises(TransportError):
        without.ping(ref(mtls_registry.host, "tls/repo"))
    mismatched = make_scheme([Host(mtls_registry.host, regcert=pki.ca_pem,
                                   client_cert=pki.client_pem, client_key=_pem_key(ec.generate_private_key(ec.SECP256R1())))])
    with pytest.raises(TransportError, match="clientCert/clientKey") as info:
        mismatched.ping(ref(mtls_registry.host, "tls/repo"))
    assert "PRIVATE KEY" not in str(info.value)
