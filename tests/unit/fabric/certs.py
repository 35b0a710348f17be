"""Self-signed enrollments for unit tests that need a certificate but no CA."""

from __future__ import annotations

import datetime
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from fedledger.fabric.ca import ATTRIBUTE_EXTENSION_OID, Enrollment
from fedledger.fabric.identity import Identity, Signer


def self_signed(common_name: str, *, msp_id: str = "TestMSP", roles: str = "",
                valid_days: tuple[int, int] = (-1, 30)) -> Enrollment:
    """A self-signed enrollment valid from ``valid_days[0]`` to ``valid_days[1]`` days from now."""
    signer = Signer.generate()
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(signer.public_key)
        .serial_number(x509.random_serial_number()).not_valid_before(now + datetime.timedelta(days=valid_days[0]))
        .not_valid_after(now + datetime.timedelta(days=valid_days[1]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if roles:
        value = json.dumps({"attrs": {"fedledger.role": roles}}).encode()
        builder = builder.add_extension(x509.UnrecognizedExtension(ATTRIBUTE_EXTENSION_OID, value), critical=False)
    key = serialization.load_pem_private_key(signer.private_pem(), password=None)
    cert = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return Enrollment(Identity(msp_id, pem), signer, pem)
