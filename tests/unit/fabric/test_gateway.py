"""Unit tests of connect(): arguments checked up front, and an unreachable peer named in the error."""

from __future__ import annotations

import socket

import pytest

from fedledger.errors import EndorseError, FabricError, GatewayError
from fedledger.fabric import connect

from .certs import self_signed


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_gateway_is_named_in_the_error_of_every_stage() -> None:
    client = self_signed("client", msp_id="ManufacturerMSP")
    address = f"127.0.0.1:{closed_port()}"

    with connect(address, identity=client.identity, signer=client.signer,
                 tls_root_certificates=client.identity.certificate_pem,
                 server_name="peer0.manufacturer.fedledger.local") as gateway:
        contract = gateway.network("fedledger").contract("fedledger")
        with pytest.raises(GatewayError, match=f"cannot reach the Fabric Gateway at {address}") as evaluated:
            contract.evaluate("Version")
        with pytest.raises(EndorseError, match=f"cannot reach the Fabric Gateway at {address}") as endorsed:
            contract.submit("Version")
        with pytest.raises(GatewayError, match=f"reading events of chaincode fedledger.*{address}"):
            next(gateway.network("fedledger").chaincode_events("fedledger"))

    assert evaluated.value.code == endorsed.value.code == "UNAVAILABLE"
    assert evaluated.value.address == address
    assert len(endorsed.value.tx_id) == 64 and endorsed.value.tx_id in str(endorsed.value)


def test_connect_checks_its_arguments_before_connecting() -> None:
    client, other = self_signed("client"), self_signed("other")
    pem = client.identity.certificate_pem

    with pytest.raises(FabricError, match="host:port"):
        connect("peer0:notaport", identity=client.identity, signer=client.signer, tls_root_certificates=pem)
    with pytest.raises(FabricError, match="not PEM certificates"):
        connect("peer0:7051", identity=client.identity, signer=client.signer, tls_root_certificates=b"junk")
    with pytest.raises(FabricError, match="does not match the certificate"):
        connect("peer0:7051", identity=client.identity, signer=other.signer, tls_root_certificates=pem)
    with pytest.raises(FabricError, match=r"\(certificate_chain_pem, private_key_pem\)"):
        connect("peer0:7051", identity=client.identity, signer=client.signer, tls_root_certificates=pem,
                client_tls=(client.signer.private_pem(), pem))
    with pytest.raises(FabricError, match="endorse timeout must be a positive"):
        connect("peer0:7051", identity=client.identity, signer=client.signer, tls_root_certificates=pem,
                endorse_timeout=0)


def test_an_expired_or_not_yet_valid_certificate_is_named_before_anything_is_sent() -> None:
    expired, early = self_signed("old", valid_days=(-30, -1)), self_signed("new", valid_days=(2, 30))
    pem = expired.identity.certificate_pem

    with pytest.raises(FabricError, match="expired on .*reenroll"):
        connect("peer0:7051", identity=expired.identity, signer=expired.signer, tls_root_certificates=pem)
    with pytest.raises(FabricError, match="not valid before"):
        connect("peer0:7051", identity=early.identity, signer=early.signer, tls_root_certificates=pem)


def test_a_gateway_reports_where_it_connects_and_as_whom() -> None:
    client = self_signed("client", msp_id="CarrierMSP")

    with connect("[::1]:7051", identity=client.identity, signer=client.signer,
                 tls_root_certificates=client.identity.certificate_pem) as gateway:
        network = gateway.network("fedledger")

        assert gateway.address == "[::1]:7051"
        assert gateway.identity.msp_id == "CarrierMSP"
        assert network.name == "fedledger"
        assert repr(network.contract("fedledger", "fedledger")) == \
            "Contract('fedledger', contract_name='fedledger', channel='fedledger')"
