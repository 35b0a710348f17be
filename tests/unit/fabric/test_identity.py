"""Unit tests of Fabric signing: signatures verify, are low-S, and CA tokens are well formed."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from fedledger.errors import FabricError
from fedledger.fabric.ca import CAClient
from fedledger.fabric.identity import P256_ORDER, Signer, certificate_fingerprint

from .certs import self_signed


def test_signatures_verify_with_the_certificates_public_key_and_are_low_s() -> None:
    enrollment = self_signed("signer")
    public_key = enrollment.identity.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)

    for i in range(200):
        message = f"proposal {i}".encode()
        signature = enrollment.signer.sign(message)

        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        _, s = decode_dss_signature(signature)
        assert s <= P256_ORDER // 2


def test_a_signer_round_trips_through_pem_and_matches_only_its_certificate() -> None:
    enrollment, other = self_signed("a"), self_signed("b")

    again = Signer.from_pem(enrollment.signer.private_pem())

    assert again.matches(enrollment.identity.certificate)
    assert not again.matches(other.identity.certificate)
    assert "PRIVATE" not in repr(again)


def test_non_p256_and_unreadable_keys_are_refused() -> None:
    with pytest.raises(FabricError, match="P-256"):
        Signer(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(FabricError, match="not a readable"):
        Signer.from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_the_fingerprint_is_the_sha256_of_the_der_certificate() -> None:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    enrollment = self_signed("fp")
    der = enrollment.identity.certificate.public_bytes(serialization.Encoding.DER)

    assert certificate_fingerprint(enrollment.identity.certificate_pem) == hashlib.sha256(der).hexdigest()
    assert enrollment.identity.fingerprint == hashlib.sha256(der).hexdigest()


def test_ca_token_is_cert_dot_signature_over_method_uri_body_cert() -> None:
    enrollment = self_signed("registrar")
    body = b'{"id":"acme"}'

    token = CAClient._token(enrollment, "POST", "/api/v1/register", body)

    cert_b64, sig_b64 = token.split(".")
    assert base64.b64decode(cert_b64) == enrollment.identity.certificate_pem
    payload = ".".join(["POST", base64.b64encode(b"/api/v1/register").decode(), base64.b64encode(body).decode(), cert_b64])
    public_key = enrollment.identity.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(base64.b64decode(sig_b64), payload.encode(), ec.ECDSA(hashes.SHA256()))


def test_ca_client_refuses_plain_http_and_bad_roots() -> None:
    with pytest.raises(FabricError, match="https://host:port"):
        CAClient("http://127.0.0.1:7054", msp_id="X", tls_root_pem=self_signed("r").identity.certificate_pem)
    with pytest.raises(FabricError, match="TLS root"):
        CAClient("https://127.0.0.1:7054", msp_id="X", tls_root_pem=b"not a certificate")
