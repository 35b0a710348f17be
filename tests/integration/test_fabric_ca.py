"""The CA client and wallet against a real Fabric CA server over TLS."""

from __future__ import annotations

import stat
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from fedledger.errors import CAError, CAUnreachableError
from fedledger.fabric.ca import CAClient, Enrollment
from fedledger.fabric.wallet import FileWallet

from tests.unit.fabric.certs import self_signed

from .conftest import RunningCA, free_port


@pytest.fixture(scope="module")
def admin(fabric_ca: RunningCA) -> Enrollment:
    return fabric_ca.client().enroll(*fabric_ca.admin)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_ca_info_names_the_ca_and_its_chain_is_the_tls_root(fabric_ca: RunningCA) -> None:
    info = fabric_ca.client().info()

    assert info.ca_name == "ca-manufacturer"
    assert info.version == "1.5.21"
    assert x509.load_pem_x509_certificate(info.ca_chain_pem) == x509.load_pem_x509_certificate(fabric_ca.tls_root_pem)


def test_a_registered_company_enrolls_with_its_role_in_the_certificate(fabric_ca: RunningCA, admin: Enrollment) -> None:
    ca = fabric_ca.client()
    name = unique("acme")

    secret = ca.register(admin, name, attributes={"fedledger.role": "participant,committee"})
    company = ca.enroll(name, secret)

    assert company.enrollment_id == name
    assert company.identity.msp_id == "ManufacturerMSP"
    assert company.attributes()["fedledger.role"] == "participant,committee"
    # The issuing CA signed it, and the key the client generated is the one certified.
    ca_cert = x509.load_pem_x509_certificate(company.ca_chain_pem)
    company.identity.certificate.verify_directly_issued_by(ca_cert)
    signature = company.signer.sign(b"proposal bytes")
    public_key = company.identity.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, b"proposal bytes", ec.ECDSA(hashes.SHA256()))


def test_a_wrong_enrollment_secret_is_refused_with_the_cas_reason(fabric_ca: RunningCA, admin: Enrollment) -> None:
    ca = fabric_ca.client()
    name = unique("bolt")
    ca.register(admin, name, secret="right-secret")

    with pytest.raises(CAError, match=f"refused enrollment of {name}: Authentication failure") as caught:
        ca.enroll(name, "wrong-secret")
    assert caught.value.codes == [20]


def test_a_duplicate_registration_is_refused(fabric_ca: RunningCA, admin: Enrollment) -> None:
    ca = fabric_ca.client()
    name = unique("cargo")
    ca.register(admin, name)

    with pytest.raises(CAError, match=f"Identity '{name}' is already registered"):
        ca.register(admin, name)


def test_an_identity_that_is_not_a_registrar_cannot_register(fabric_ca: RunningCA, admin: Enrollment) -> None:
    ca = fabric_ca.client()
    name = unique("plain")
    plain = ca.enroll(name, ca.register(admin, name))

    with pytest.raises(CAError, match="Authorization failure"):
        ca.register(plain, unique("other"))


def test_the_tls_profile_issues_a_server_and_client_certificate_for_the_hosts(fabric_ca: RunningCA, admin: Enrollment) -> None:
    ca = fabric_ca.client()
    name = unique("peer0")
    secret = ca.register(admin, name, identity_type="peer", max_enrollments=2)

    tls = ca.enroll(name, secret, profile="tls", hosts=("127.0.0.1", "peer0.manufacturer.local"))

    cert = tls.identity.certificate
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usages and x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usages
    assert "peer0.manufacturer.local" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_reenroll_renews_key_and_certificate_of_the_same_identity(fabric_ca: RunningCA, admin: Enrollment) -> None:
    ca = fabric_ca.client()
    name = unique("renew")
    first = ca.enroll(name, ca.register(admin, name, attributes={"fedledger.role": "participant"}))

    second = ca.reenroll(first)

    assert second.enrollment_id == name and second.attributes()["fedledger.role"] == "participant"
    assert second.identity.fingerprint != first.identity.fingerprint
    assert second.identity.certificate.serial_number != first.identity.certificate.serial_number


def test_a_revoked_identity_is_in_the_crl_and_can_no_longer_act(fabric_ca: RunningCA, admin: Enrollment) -> None:
    ca = fabric_ca.client()
    name = unique("gone")
    company = ca.enroll(name, ca.register(admin, name))

    revocation = ca.revoke(admin, enrollment_id=name, reason="keycompromise")

    serial = company.identity.certificate.serial_number
    assert format(serial, "x") in [s.lstrip("0") for s, _ in revocation.revoked]
    assert revocation.crl().get_revoked_certificate_by_serial_number(serial) is not None
    assert x509.load_pem_x509_crl(ca.generate_crl(admin)).get_revoked_certificate_by_serial_number(serial) is not None
    with pytest.raises(CAError, match=f"refused reenrollment of {name}"):
        ca.reenroll(company)


def test_an_unreachable_ca_is_reported_as_such(fabric_ca: RunningCA) -> None:
    ca = CAClient(f"https://127.0.0.1:{free_port()}", msp_id="X", tls_root_pem=fabric_ca.tls_root_pem, timeout=2)

    with pytest.raises(CAUnreachableError, match="cannot reach the Fabric CA at https://127.0.0.1"):
        ca.info()


def test_tls_is_verified_against_the_given_root_only(fabric_ca: RunningCA) -> None:
    # Another CA's certificate as the root: the real server's chain must not verify.
    ca = CAClient(fabric_ca.url, msp_id="X", tls_root_pem=self_signed("impostor-root").identity.certificate_pem)

    with pytest.raises(CAUnreachableError, match="CERTIFICATE_VERIFY_FAILED"):
        ca.info()


def test_an_enrollment_survives_the_wallet_with_its_key_private(fabric_ca: RunningCA, admin: Enrollment, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = fabric_ca.client()
    name = unique("kept")
    enrollment = ca.enroll(name, ca.register(admin, name, attributes={"fedledger.role": "publisher"}))
    wallet = FileWallet(tmp_path / "wallet")

    wallet.put(name, enrollment)
    again = wallet.get(name)

    assert stat.S_IMODE((tmp_path / "wallet" / name / "key.pem").stat().st_mode) == 0o600
    assert again.identity == enrollment.identity
    assert again.attributes()["fedledger.role"] == "publisher"
    # The reloaded key still authenticates to the CA: a reenroll with it succeeds.
    assert ca.reenroll(again).enrollment_id == name
