"""Fabric identities and signers: an MSP id with its certificate, and an ECDSA P-256 key.

Fabric signs with ECDSA over SHA-256 and accepts only low-S signatures (``s <= n/2``), so every
signature made here is normalized to the low half of the curve order and DER-encoded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from fedledger.errors import FabricError

# The order of the P-256 group: a signature's s must not exceed half of it.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def certificate_fingerprint(certificate_pem: bytes) -> str:
    """Lower-case hex SHA-256 of a certificate's DER bytes (what the chaincode records)."""
    cert = x509.load_pem_x509_certificate(certificate_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class Identity:
    """A Fabric client identity: the MSP it belongs to and its X.509 certificate (PEM)."""

    msp_id: str
    certificate_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.load_pem_x509_certificate(self.certificate_pem)

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 of the certificate's DER bytes."""
        return certificate_fingerprint(self.certificate_pem)


class Signer:
    """Signs with an ECDSA P-256 private key the way Fabric verifies: SHA-256, low-S, DER."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise FabricError(f"Fabric identities here use P-256 keys, not {private_key.curve.name}")
        self._key = private_key

    def __repr__(self) -> str:
        # The key never appears in logs or tracebacks.
        return "Signer(P-256)"

    @classmethod
    def generate(cls) -> Signer:
        """A fresh P-256 key from the operating system's CSPRNG."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> Signer:
        """Load an unencrypted PKCS#8 (or SEC1) PEM private key."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as err:
            raise FabricError(f"not a readable unencrypted PEM private key: {err}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise FabricError("the private key is not an elliptic-curve key")
        return cls(key)

    def private_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM: write it only to files of mode 0600."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The matching public key."""
        return self._key.public_key()

    def matches(self, certificate: x509.Certificate) -> bool:
        """Whether ``certificate`` certifies this signer's public key."""
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        return bool(certificate.public_key().public_bytes(*spki) == self.public_key.public_bytes(*spki))

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (hashed with SHA-256 here) and return a low-S DER signature."""
        r, s = decode_dss_signature(self._key.sign(message, ec.ECDSA(hashes.SHA256())))
        if s > P256_ORDER // 2:
            s = P256_ORDER - s
        return encode_dss_signature(r, s)

    def certificate_signing_request(self, common_name: str, *, hosts: tuple[str, ...] = ()) -> bytes:
        """A PEM CSR for ``common_name`` (and DNS/IP SANs for TLS certificates)."""
        import ipaddress

        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
