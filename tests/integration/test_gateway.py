"""The Fabric Gateway client against the consortium's real peers, orderers and FedLedger chaincode.

The ``consortium`` fixture (tests/integration/conftest.py) brings the network up and gives its
connection profile: per organization the MSP id, one peer (address, TLS CA, TLS server name) and
the admin's and a client's certificate and key.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature, encode_dss_signature

from fedledger.errors import EndorseError, GatewayError
from fedledger.fabric import (
    ChaincodeEvent,
    ChaincodeEventStream,
    Contract,
    FileCheckpointer,
    Gateway,
    Identity,
    Signer,
    connect,
)
from fedledger.fabric.identity import P256_ORDER

# How long to wait for an event that a committed transaction set.
EVENT_WAIT_SECONDS = 60.0


class Consortium(Protocol):
    @property
    def profile(self) -> dict[str, Any]: ...


def org_names(consortium: Consortium) -> list[str]:
    return sorted(consortium.profile["orgs"])


@contextmanager
def gateway_of(consortium: Consortium, org: str, user: str = "client", *,
               address: str | None = None, server_name: str | None = None) -> Iterator[Gateway]:
    """A gateway connection to ``org``'s peer as one of its users."""
    entry = consortium.profile["orgs"][org]
    peer, credentials = entry["peer"], entry["users"][user]
    identity = Identity(entry["msp_id"], Path(credentials["cert"]).read_bytes())
    signer = Signer.from_pem(Path(credentials["key"]).read_bytes())
    with connect(address or peer["address"], identity=identity, signer=signer,
                 tls_root_certificates=Path(peer["tls_ca"]).read_bytes(),
                 server_name=server_name or peer.get("server_name")) as gateway:
        yield gateway


def ledger(consortium: Consortium, gateway: Gateway) -> Contract:
    return gateway.network(consortium.profile["channel"]).contract(consortium.profile["chaincode"])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def admin_contract(consortium: Consortium, gateway: Gateway) -> Contract:
    """The ledger as an org admin, who may register companies for any certificate of its org."""
    contract = ledger(consortium, gateway)
    me = json.loads(contract.evaluate("WhoAmI"))
    assert me["admin"], (f"the chaincode does not see the {gateway.identity.msp_id} admin as an admin: its "
                         f"certificate needs the 'admin' OU (NodeOUs enabled)")
    return contract


def register_company(name: str) -> tuple[str, ...]:
    """RegisterCompany arguments for a new company with a fresh (random) certificate fingerprint."""
    return (name, "participant", os.urandom(32).hex())


def first_event(stream: ChaincodeEventStream, wanted: Callable[[ChaincodeEvent], bool],
                seen: list[ChaincodeEvent] | None = None) -> ChaincodeEvent | None:
    """The first event ``wanted`` accepts, or None once EVENT_WAIT_SECONDS pass (the stream is then closed)."""
    timer = threading.Timer(EVENT_WAIT_SECONDS, stream.close)
    timer.start()
    try:
        for event in stream:
            if seen is not None:
                seen.append(event)
            if wanted(event):
                return event
        return None
    finally:
        timer.cancel()


@pytest.fixture(scope="module", autouse=True)
def peers_discovered(consortium: Consortium) -> None:
    """Wait until every organization's gateway knows every organization's peer.

    Gossip spreads peer membership a few seconds after the network starts; until then a gateway
    can neither send an evaluation to another organization's peer nor plan a multi-organization
    endorsement ("no peers available to evaluate chaincode").
    """
    deadline = time.monotonic() + 60
    for org in org_names(consortium):
        with gateway_of(consortium, org) as gateway:
            contract = ledger(consortium, gateway)
            for other in org_names(consortium):
                msp_id = consortium.profile["orgs"][other]["msp_id"]
                while True:
                    try:
                        contract.evaluate("Version", endorsing_organizations=[msp_id])
                        break
                    except GatewayError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)


def test_version_is_evaluated_through_the_peers_of_two_organizations(consortium: Consortium) -> None:
    results = []
    for org in org_names(consortium)[:2]:
        with gateway_of(consortium, org) as gateway:
            contract = ledger(consortium, gateway)
            results.append(json.loads(contract.evaluate("Version")))
            # The contract is registered as "fedledger" and is also the default contract.
            named = gateway.network(consortium.profile["channel"]).contract(consortium.profile["chaincode"],
                                                                            "fedledger")
            assert json.loads(named.evaluate("Version")) == results[-1]

    assert results[0] == results[1]
    assert results[0]["chaincode"] == "fedledger" and results[0]["version"]


def test_who_am_i_returns_each_organizations_msp_id(consortium: Consortium) -> None:
    for org in org_names(consortium):
        with gateway_of(consortium, org) as gateway:
            me = json.loads(ledger(consortium, gateway).evaluate("WhoAmI"))

            assert me["msp_id"] == consortium.profile["orgs"][org]["msp_id"] == gateway.identity.msp_id
            assert me["fingerprint"] == gateway.identity.fingerprint


def test_an_evaluation_can_be_sent_to_another_organizations_peer(consortium: Consortium) -> None:
    here, there = org_names(consortium)[:2]
    with gateway_of(consortium, here) as gateway:
        other_msp = consortium.profile["orgs"][there]["msp_id"]

        me = json.loads(ledger(consortium, gateway).evaluate("WhoAmI", endorsing_organizations=[other_msp]))

        # The caller is still who it is, whichever peer ran the chaincode.
        assert me["msp_id"] == consortium.profile["orgs"][here]["msp_id"]


def test_a_submitted_transaction_commits_valid_in_a_block(consortium: Consortium) -> None:
    org = org_names(consortium)[0]
    with gateway_of(consortium, org) as gateway:
        contract = ledger(consortium, gateway)

        submitted = contract.submit_async("WhoAmI")
        status = submitted.status()
        result = contract.submit("Version")

        assert status.successful and status.code == "VALID"
        assert status.tx_id == submitted.tx_id and len(submitted.tx_id) == 64
        assert status.block_number > 0
        assert json.loads(submitted.result)["msp_id"] == consortium.profile["orgs"][org]["msp_id"]
        assert json.loads(result)["chaincode"] == "fedledger"


def test_a_transaction_signed_off_line_at_every_step_commits(consortium: Consortium) -> None:
    org = org_names(consortium)[0]
    entry = consortium.profile["orgs"][org]
    identity = Identity(entry["msp_id"], Path(entry["users"]["client"]["cert"]).read_bytes())
    key = serialization.load_pem_private_key(Path(entry["users"]["client"]["key"]).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)

    def sign_digest(digest: bytes) -> bytes:
        """What an HSM does: sign a pre-hashed SHA-256 digest (made low-S, as Fabric requires)."""
        r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
        return encode_dss_signature(r, min(s, P256_ORDER - s))

    # No signer: the client process never holds the key.
    with connect(entry["peer"]["address"], identity=identity, signer=None,
                 tls_root_certificates=Path(entry["peer"]["tls_ca"]).read_bytes(),
                 server_name=entry["peer"].get("server_name")) as gateway:
        proposal = ledger(consortium, gateway).new_proposal("WhoAmI")
        transaction = proposal.with_signature(sign_digest(proposal.digest())).endorse()
        submitted = transaction.with_signature(sign_digest(transaction.digest())).submit()
        status = submitted.with_signature(sign_digest(submitted.digest())).status()

    assert status.successful and status.tx_id == proposal.tx_id
    assert json.loads(transaction.result)["msp_id"] == entry["msp_id"]


def test_a_chaincode_error_surfaces_verbatim_in_the_endorse_error(consortium: Consortium) -> None:
    with gateway_of(consortium, org_names(consortium)[0]) as gateway:
        contract = ledger(consortium, gateway)

        with pytest.raises(EndorseError) as refused:
            contract.submit("RegisterCompany", ("Bad Name!", "participant", ""))
        missing = unique("nobody")
        with pytest.raises(GatewayError) as not_found:
            contract.evaluate("GetCompany", (missing,))

    expected = ('company name "Bad Name!" is invalid: use 1-64 of a-z 0-9 . _ -, '
                'starting with a letter or digit')
    assert expected in str(refused.value)
    assert any(expected in detail.message for detail in refused.value.details)
    assert refused.value.tx_id in str(refused.value)
    assert refused.value.code in {"ABORTED", "UNKNOWN"}
    assert f"company {missing} is not registered" in str(not_found.value)


def test_of_two_transactions_endorsed_on_the_same_state_only_the_first_to_commit_is_valid(
        consortium: Consortium) -> None:
    with gateway_of(consortium, org_names(consortium)[0], "admin") as gateway:
        contract = admin_contract(consortium, gateway)
        name = unique("twice")
        # Both are endorsed before either is ordered, so both read the company name as free.
        first = contract.new_proposal("RegisterCompany", register_company(name)).endorse()
        second = contract.new_proposal("RegisterCompany", register_company(name)).endorse()

        statuses = [first.submit().status(), second.submit().status()]

    assert sorted(status.code for status in statuses) == ["MVCC_READ_CONFLICT", "VALID"]
    assert all(status.block_number > 0 for status in statuses)


def test_chaincode_events_arrive_and_a_file_checkpoint_resumes_without_repeats(
        consortium: Consortium, tmp_path: Path) -> None:
    channel = consortium.profile["channel"]
    chaincode = consortium.profile["chaincode"]
    with gateway_of(consortium, org_names(consortium)[0], "admin") as gateway:
        contract = admin_contract(consortium, gateway)
        names = [unique("evented"), unique("evented")]
        submitted = [contract.submit_async("RegisterCompany", register_company(n)) for n in names]
        statuses = {s.tx_id: s.status() for s in submitted}
        assert all(status.successful for status in statuses.values())
        company = {s.tx_id: n for s, n in zip(submitted, names)}
        start = min(status.block_number for status in statuses.values())
        checkpoint = tmp_path / "events-checkpoint.json"

        with gateway.network(channel).chaincode_events(chaincode, start_block=start,
                                                       checkpointer=FileCheckpointer(checkpoint)) as stream:
            first = first_event(stream, lambda e: e.tx_id in company)
        assert first is not None, f"no event for transactions {sorted(company)} within {EVENT_WAIT_SECONDS}s"
        FileCheckpointer(checkpoint).checkpoint_chaincode_event(first)

        # A new listener (a restart) resumes from the file, just after the event already processed;
        # the checkpoint wins over start_block.
        seen: list[ChaincodeEvent] = []
        with gateway.network(channel).chaincode_events(chaincode, start_block=0,
                                                       checkpointer=FileCheckpointer(checkpoint)) as stream:
            second = first_event(stream, lambda e: e.tx_id in company, seen)

    assert second is not None, f"no event for the other transaction after resuming from {checkpoint}"
    assert {first.tx_id, second.tx_id} == set(company)
    for event in (first, second):
        assert event.block_number == statuses[event.tx_id].block_number
        assert (event.chaincode_name, event.event_name) == (chaincode, "CompanyRegistered")
        assert json.loads(event.payload)["name"] == company[event.tx_id]
    assert first.tx_id not in {event.tx_id for event in seen}
    assert all(event.block_number >= first.block_number for event in seen)


def test_an_unreachable_address_is_named_in_the_error(consortium: Consortium) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    org = org_names(consortium)[0]

    with gateway_of(consortium, org, address=address) as gateway:
        with pytest.raises(GatewayError) as unreachable:
            ledger(consortium, gateway).evaluate("Version")

    assert unreachable.value.code == "UNAVAILABLE"
    assert f"cannot reach the Fabric Gateway at {address}" in str(unreachable.value)


def test_a_channel_the_peer_has_not_joined_is_named_and_not_mistaken_for_a_dead_peer(
        consortium: Consortium) -> None:
    channel = unique("nochannel")
    with gateway_of(consortium, org_names(consortium)[0]) as gateway:
        with pytest.raises(GatewayError) as unknown:
            gateway.network(channel).contract(consortium.profile["chaincode"]).evaluate("Version")

    assert channel in str(unknown.value)
    assert "cannot reach" not in str(unknown.value)


def test_a_peer_whose_tls_name_does_not_match_is_reported_with_a_tls_hint(consortium: Consortium) -> None:
    org = org_names(consortium)[0]
    address = consortium.profile["orgs"][org]["peer"]["address"]

    with gateway_of(consortium, org, server_name="not-the-peer.example") as gateway:
        with pytest.raises(GatewayError) as mismatched:
            ledger(consortium, gateway).evaluate("Version")

    assert mismatched.value.code == "UNAVAILABLE"
    assert address in str(mismatched.value) and "server name" in str(mismatched.value)
