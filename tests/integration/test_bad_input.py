"""Bad input against the real network: a replayed envelope, and identities Fabric denies with bare words.

A replayed envelope is accepted by the ordering service and marked ``DUPLICATE_TXID`` by the peers,
while the commit status finds the original, VALID: the client must tell the replay from a fresh
success. A peer refuses a signature by another key, a certificate from a CA it does not trust, or
an MSP it does not know with the same "access denied": the client must say which it is.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fabric_protos.common import ledger_pb2

from fedledger.errors import AccessDeniedError, DenialCause, GatewayError, ReplayedTransactionError
from fedledger.fabric import Contract, Gateway, Identity, Signer, connect

from tests.integration.conftest import Consortium
from tests.unit.fabric.certs import self_signed


def first_org(consortium: Consortium) -> str:
    orgs = consortium.profile["orgs"]
    assert isinstance(orgs, dict)
    return str(sorted(orgs)[0])


@contextmanager
def gateway_as(consortium: Consortium, identity: Identity, signer: Signer | None) -> Iterator[Gateway]:
    """A gateway to the first organization's peer as ``identity``; ``signer=None`` signs off-line."""
    peer = consortium.org(first_org(consortium))["peer"]
    assert isinstance(peer, dict)
    with connect(str(peer["address"]), identity=identity, signer=signer,
                 tls_root_certificates=Path(peer["tls_ca"]).read_bytes(),
                 server_name=peer.get("server_name")) as gateway:
        yield gateway


def contract_of(consortium: Consortium, gateway: Gateway) -> Contract:
    return gateway.network(consortium.channel).contract(consortium.chaincode)


def height(consortium: Consortium, gateway: Gateway) -> int:
    info = ledger_pb2.BlockchainInfo.FromString(
        gateway.network(consortium.channel).contract("qscc").evaluate("GetChainInfo", [consortium.channel]))
    return int(info.height)


def ledger_state(contract: Contract, company: str) -> tuple[object, object]:
    """What a RegisterCompany writes: the company's record, and the list of every company."""
    return json.loads(contract.evaluate("GetCompany", (company,))), json.loads(contract.evaluate("ListCompanies"))


def register_args(name: str) -> tuple[str, str, str]:
    return (name, "participant", os.urandom(32).hex())


@pytest.fixture(scope="module")
def admin(consortium: Consortium) -> Iterator[tuple[Identity, Signer]]:
    """The first organization's admin (who may register companies), once every org's peer answers."""
    identity, signer = consortium.identity(first_org(consortium), "admin")
    deadline = time.monotonic() + 60
    with gateway_as(consortium, identity, signer) as gateway:
        orgs = consortium.profile["orgs"]
        assert isinstance(orgs, dict)
        for org in sorted(orgs):
            msp_id = str(consortium.org(org)["msp_id"])
            while True:
                try:
                    contract_of(consortium, gateway).evaluate("Version", endorsing_organizations=[msp_id])
                    break
                except GatewayError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
    yield identity, signer


def test_a_replayed_envelope_is_refused_as_a_replay_and_the_ledger_is_unchanged(
        consortium: Consortium, admin: tuple[Identity, Signer]) -> None:
    identity, signer = admin
    company = f"replayed-{os.urandom(4).hex()}"
    with gateway_as(consortium, identity, signer) as gateway:
        contract = contract_of(consortium, gateway)
        endorsed = contract.new_proposal("RegisterCompany", register_args(company)).endorse()
        signature = signer.sign(endorsed.bytes())
        signed = endorsed.with_signature(signature)
        first = signed.submit().status()
        before = ledger_state(contract, company)
        height_before = height(consortium, gateway)

        # The same envelope again, through the same connection and through a fresh one (another process).
        with pytest.raises(ReplayedTransactionError) as same_connection:
            signed.submit().status()
        with gateway_as(consortium, identity, signer) as fresh:
            again = contract_of(consortium, fresh).new_signed_transaction(endorsed.bytes(), signature)
            with pytest.raises(ReplayedTransactionError) as fresh_connection:
                again.submit().status()
        after = ledger_state(contract, company)

    assert first.successful and first.block_number >= 1
    for replay in (same_connection.value, fresh_connection.value):
        assert (replay.tx_id, replay.block_number, replay.original_code) == (first.tx_id, first.block_number, "VALID")
        assert replay.code == "DUPLICATE_TXID" and replay.height is not None and replay.height > first.block_number
        assert (f"transaction {first.tx_id} was already committed in block {first.block_number} before this "
                f"submission") in str(replay)
        assert "the envelope is a replay; nothing new was written" in str(replay)
    assert after == before
    assert height_before >= first.block_number + 1


def test_a_replay_signed_off_line_is_caught_once_the_connection_has_seen_a_later_block(
        consortium: Consortium, admin: tuple[Identity, Signer]) -> None:
    identity, signer = admin
    company = f"offline-{os.urandom(4).hex()}"
    # No signer: every signature is made here, as an HSM would, and the client cannot ask the peer
    # for the height; it knows the blocks its own commit statuses named.
    with gateway_as(consortium, identity, None) as gateway:
        contract = contract_of(consortium, gateway)
        proposal = contract.new_proposal("RegisterCompany", register_args(company))
        endorsed = proposal.with_signature(signer.sign(proposal.bytes())).endorse()
        signed = endorsed.with_signature(signer.sign(endorsed.bytes()))
        submitted = signed.submit()
        first = submitted.with_signature(signer.sign(submitted.bytes())).status()

        replayed = signed.submit()
        with pytest.raises(ReplayedTransactionError) as replay:
            replayed.with_signature(signer.sign(replayed.bytes())).status()

    assert first.successful
    assert replay.value.block_number == first.block_number
    assert replay.value.height == first.block_number + 1


def test_a_signature_by_a_key_that_is_not_the_certificates_is_explained(
        consortium: Consortium, admin: tuple[Identity, Signer]) -> None:
    identity, signer = admin
    other_key = Signer.generate()
    with gateway_as(consortium, identity, None) as gateway:
        contract = contract_of(consortium, gateway)
        proposal = contract.new_proposal("Version")
        with pytest.raises(AccessDeniedError) as evaluated:
            proposal.with_signature(other_key.sign(proposal.bytes())).evaluate()
        endorsement = contract.new_proposal("WhoAmI")
        with pytest.raises(AccessDeniedError) as endorsed:
            endorsement.with_signature(other_key.sign(endorsement.bytes())).endorse()
        # The endorsement is good; the envelope is signed by the other key: the ordering service refuses it.
        good = endorsement.with_signature(signer.sign(endorsement.bytes())).endorse()
        with pytest.raises(AccessDeniedError) as submitted:
            good.with_signature(other_key.sign(good.bytes())).submit()

    subject = identity.certificate.subject.rfc4514_string()
    for refusal, stage in ((evaluated, "evaluate"), (endorsed, "endorse"), (submitted, "submit")):
        err = refusal.value
        assert (err.cause, err.stage, err.msp_id, err.subject) == (DenialCause.KEY_MISMATCH, stage, identity.msp_id,
                                                                   subject)
        assert f"the signing key does not belong to certificate {subject} ({identity.msp_id})" in str(err)
    # Fabric's own words stay in the error, below the explanation.
    assert "access denied" in str(evaluated.value) and "FORBIDDEN" in str(submitted.value)


def test_a_certificate_from_a_ca_the_channel_does_not_trust_is_explained(
        consortium: Consortium, admin: tuple[Identity, Signer]) -> None:
    msp_id = admin[0].msp_id
    stranger = self_signed("stranger", msp_id=msp_id)

    with gateway_as(consortium, stranger.identity, stranger.signer) as gateway:
        with pytest.raises(AccessDeniedError) as denied:
            contract_of(consortium, gateway).evaluate("Version")

    err = denied.value
    assert err.cause is DenialCause.UNEXPLAINED and err.subject == "CN=stranger"
    assert (f"the peer denied access to CN=stranger ({msp_id}): the certificate may be revoked, expired, or not "
            f"issued by a CA of the channel's MSP {msp_id}") in str(err)


def test_an_identity_of_an_msp_not_in_the_channel_is_explained(consortium: Consortium) -> None:
    outsider = self_signed("outsider", msp_id="OutsiderMSP")

    with gateway_as(consortium, outsider.identity, outsider.signer) as gateway:
        contract = contract_of(consortium, gateway)
        with pytest.raises(AccessDeniedError) as evaluated:
            contract.evaluate("Version")
        with pytest.raises(AccessDeniedError) as submitted:
            contract.submit("WhoAmI")

    for refusal in (evaluated, submitted):
        assert refusal.value.cause is DenialCause.UNKNOWN_MSP
        assert (f"could not place certificate CN=outsider (OutsiderMSP) in any organization of channel "
                f"{consortium.channel}: OutsiderMSP is not one of the channel's MSPs") in str(refusal.value)
