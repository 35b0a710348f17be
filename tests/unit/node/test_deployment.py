"""Unit tests of the Flower deployment's placement: where the SuperLink is reached and what its certificate names."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from fedledger.network import LOCAL, Placement
from fedledger.node.deployment import FlowerDeployment, _superlink_tls


def _names(cert: Path) -> tuple[list[str], list[str]]:
    san = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    return [str(a) for a in san.get_values_for_type(x509.IPAddress)], san.get_values_for_type(x509.DNSName)


def test_the_superlink_is_reached_at_the_coordinators_address_and_its_certificate_names_only_that(
        tmp_path: Path) -> None:
    coordinator = Placement("10.213.9.18", "flt-coordinator")

    deployment = FlowerDeployment(tmp_path / "run", 17900, superlink=coordinator)
    _, cert, _ = _superlink_tls(tmp_path / "tls", coordinator.address)

    assert deployment.address == "10.213.9.18:17900"
    assert _names(cert) == (["10.213.9.18"], [])


def test_on_one_machine_the_superlink_is_at_127_0_0_1_and_a_certificate_for_another_address_is_replaced(
        tmp_path: Path) -> None:
    _superlink_tls(tmp_path / "tls", "10.213.9.18")

    _, cert, _ = _superlink_tls(tmp_path / "tls", LOCAL.address)

    assert FlowerDeployment(tmp_path / "run", 17900).address == "127.0.0.1:17900"
    assert _names(cert) == (["127.0.0.1"], ["localhost"])
    assert ipaddress.ip_address(LOCAL.address).is_loopback
