"""The ledger audit on the consortium's real peers: every block of the channel verified, and every
organization's peer holding the same chain.

The module writes a history worth auditing first: transactions by each organization, a pair
endorsed on the same state (one commits as MVCC_READ_CONFLICT), a company that transacts and is then
revoked (a configuration block putting a CRL into its organization's MSP), and enough single
transactions to make the chain about a hundred blocks long. One reader identity (a client of
Manufacturer) then reads the chain from every organization's peer.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from fabric_protos.common import common_pb2, ledger_pb2

from fedledger.errors import GatewayError
from fedledger.fabric import Gateway, connect
from fedledger.fabric.blocks import (
    Chain,
    Check,
    audit_ledger,
    block_hash,
    compare_chains,
    fetch_chain,
    verify_blocks,
    verify_chain,
)
from fedledger.network.companies import Consortium as Operators

from .conftest import Consortium

ORGS = ("Manufacturer", "Warehouse", "Carrier")
AUDITOR = "Manufacturer"   # whose client identity reads every peer
TARGET_HEIGHT = 100
# How long gossip may take to make every organization's peer known to every gateway.
DISCOVERY_SECONDS = 60.0
# How long every peer may take to commit the last block.
CATCH_UP_SECONDS = 30.0


@dataclass(frozen=True)
class History:
    """What the module put on the ledger, to find in the audit."""

    valid_tx_ids: tuple[str, ...]
    conflicted_tx_id: str
    revoked_tx_id: str        # submitted by the company before it was revoked
    revoked_serial: int
    height: int


def reader(consortium: Consortium, peer_org: str) -> Gateway:
    """A gateway to ``peer_org``'s peer as the auditor's client identity (a reader, nothing more)."""
    identity, signer = consortium.identity(AUDITOR)
    peer = consortium.org(peer_org)["peer"]
    assert isinstance(peer, dict)
    return connect(str(peer["address"]), identity=identity, signer=signer,
                   tls_root_certificates=Path(peer["tls_ca"]).read_bytes())


def msp_of(consortium: Consortium, org: str) -> str:
    return str(consortium.org(org)["msp_id"])


def heights(consortium: Consortium, gateway: Gateway) -> list[int]:
    qscc = gateway.network(consortium.channel).contract("qscc")
    found = []
    for org in ORGS:
        info = ledger_pb2.BlockchainInfo.FromString(
            qscc.evaluate("GetChainInfo", [consortium.channel], endorsing_organizations=[msp_of(consortium, org)]))
        found.append(int(info.height))
    return found


def wait_until_discovered(consortium: Consortium) -> None:
    """Until gossip has spread, a gateway can plan no endorsement across organizations."""
    deadline = time.monotonic() + DISCOVERY_SECONDS
    for org in ORGS:
        with consortium.gateway(org) as gateway:
            contract = gateway.network(consortium.channel).contract(consortium.chaincode)
            for other in ORGS:
                while True:
                    try:
                        contract.evaluate("Version", endorsing_organizations=[msp_of(consortium, other)])
                        break
                    except GatewayError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)


@pytest.fixture(scope="module")
def history(consortium: Consortium) -> History:
    wait_until_discovered(consortium)
    valid: list[str] = []
    with consortium.gateway("Manufacturer", "admin") as admin:
        contract = admin.network(consortium.channel).contract(consortium.chaincode)
        for _ in range(2):
            submitted = contract.submit_async("RegisterCompany", (f"audited-{uuid.uuid4().hex[:10]}", "participant",
                                                                  os.urandom(32).hex()))
            assert submitted.status().successful
            valid.append(submitted.tx_id)
        # Both endorsed before either is ordered: the second to commit conflicts.
        name = f"twice-{uuid.uuid4().hex[:10]}"
        pair = [contract.new_proposal("RegisterCompany", (name, "participant", os.urandom(32).hex())).endorse()
                for _ in range(2)]
        statuses = [transaction.submit().status() for transaction in pair]
    assert sorted(s.code for s in statuses) == ["MVCC_READ_CONFLICT", "VALID"]
    conflicted = next(s.tx_id for s in statuses if not s.successful)
    valid.append(next(s.tx_id for s in statuses if s.successful))

    for org in ORGS:
        with consortium.gateway(org) as gateway:
            submitted = gateway.network(consortium.channel).contract(consortium.chaincode).submit_async("WhoAmI")
            assert submitted.status().successful
            valid.append(submitted.tx_id)

    operators = Operators(consortium.net)
    company = f"revoked-{uuid.uuid4().hex[:8]}"
    enrollment = operators.enroll(company, org="Warehouse", roles="participant")
    peer = consortium.org("Warehouse")["peer"]
    assert isinstance(peer, dict)
    with connect(str(peer["address"]), identity=enrollment.identity, signer=enrollment.signer,
                 tls_root_certificates=Path(peer["tls_ca"]).read_bytes()) as gateway:
        submitted = gateway.network(consortium.channel).contract(consortium.chaincode).submit_async("WhoAmI")
        assert submitted.status().successful
        revoked_tx_id = submitted.tx_id
    operators.revoke(company, org=consortium.net.config.company("Warehouse"), reason="keycompromise")

    with consortium.gateway("Carrier") as gateway:
        contract = gateway.network(consortium.channel).contract(consortium.chaincode)
        # One transaction at a time: each is cut into its own block after the batch timeout.
        while max(heights(consortium, gateway)) < TARGET_HEIGHT:
            submitted = contract.submit_async("WhoAmI")
            assert submitted.status().successful
            valid.append(submitted.tx_id)
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while len(set(found := heights(consortium, gateway))) > 1:
            assert time.monotonic() < deadline, f"the peers did not catch up with each other: heights {found}"
            time.sleep(0.2)
    return History(tuple(valid), conflicted, revoked_tx_id, enrollment.identity.certificate.serial_number, found[0])


@pytest.fixture(scope="module")
def chains(consortium: Consortium, history: History) -> dict[str, Chain]:
    fetched = {}
    for org in ORGS:
        with reader(consortium, org) as gateway:
            fetched[org] = fetch_chain(gateway, consortium.channel, peer_msp_id=msp_of(consortium, org))
    return fetched


def trusted_genesis(consortium: Consortium) -> str:
    """The genesis block's hash, from the block file the channel was created with."""
    return block_hash((consortium.net.layout.channel_dir / f"{consortium.channel}.block").read_bytes())


def test_every_organizations_peer_holds_a_chain_that_passes_every_check_and_the_peers_agree(
        consortium: Consortium, history: History) -> None:
    gateways = {msp_of(consortium, org): reader(consortium, org) for org in ORGS}
    try:
        started = time.perf_counter()
        audit = audit_ledger(gateways, consortium.channel, trusted_genesis_hash=trusted_genesis(consortium))
        elapsed = time.perf_counter() - started
    finally:
        for gateway in gateways.values():
            gateway.close()

    failures = [f"{report.source}: {check.name}: {check.reason}" for report in audit.chains for check in report.failed]
    failures += [f"peers: {check.name}: {check.reason}" for check in audit.agreement.checks if not check.passed]
    assert audit.ok, "\n".join(failures)
    assert {report.check(Check.GENESIS_BLOCK).checked for report in audit.chains} == {1}
    assert {report.check(Check.CHAIN_INFO).checked for report in audit.chains} == {1}
    assert audit.agreement.common_height >= history.height >= TARGET_HEIGHT
    assert all(report.height >= history.height for report in audit.chains)
    report = audit.chains[0]
    transactions = [tx for block in report.blocks for tx in block.transactions]
    valid_endorsed = [tx for tx in transactions if tx.type == "ENDORSER_TRANSACTION" and tx.validation_code == "VALID"]
    assert report.channel == consortium.channel
    # Every envelope but the genesis block's (unsigned by configtxgen) had its creator checked; every
    # valid endorser transaction its id and endorsements.
    assert report.check(Check.CREATOR_SIGNATURES).checked == report.check(Check.CREATOR_CERTIFICATES).checked \
        == len(transactions) - 1
    assert report.check(Check.ENDORSEMENTS).checked == report.check(Check.TRANSACTION_IDS).checked \
        == len(valid_endorsed) >= len(history.valid_tx_ids)
    assert report.check(Check.VALIDATION_CODES).checked == len(transactions)
    # Every block after the genesis block was signed by the ordering service's organization.
    assert report.check(Check.ORDERER_SIGNATURES).checked == report.height - 1
    assert {msp for block in report.blocks[1:] for msp in block.orderer_msp_ids} == {"OrdererMSP"}
    print(f"\naudit of {len(audit.chains)} peers x {report.height} blocks (fetch + verify + compare): {elapsed:.2f} s")


def test_the_audit_reports_each_transactions_validation_code_creator_and_endorsers(
        consortium: Consortium, history: History, chains: dict[str, Chain]) -> None:
    report = verify_chain(chains["Warehouse"], trusted_genesis_hash=trusted_genesis(consortium))

    assert report.ok, [check.reason for check in report.failed]
    transactions = {tx.tx_id: (block.number, tx) for block in report.blocks for tx in block.transactions}
    assert all(transactions[tx_id][1].validation_code == "VALID" for tx_id in history.valid_tx_ids)
    _, conflicted = transactions[history.conflicted_tx_id]
    assert conflicted.validation_code == "MVCC_READ_CONFLICT"
    # The channel's endorsement policy is a majority of the three companies.
    assert all(len(set(transactions[t][1].endorser_msp_ids)) >= 2 for t in history.valid_tx_ids)
    assert transactions[history.valid_tx_ids[0]][1].creator_msp_id == msp_of(consortium, "Manufacturer")


def test_a_company_revoked_later_signed_validly_before_its_crl_entered_the_configuration(
        consortium: Consortium, history: History, chains: dict[str, Chain]) -> None:
    report = verify_chain(chains["Carrier"])

    revoked_in = [m.config_block for m in report.msps
                  if m.msp_id == msp_of(consortium, "Warehouse") and history.revoked_serial in m.revoked_serials]
    signed_in = next(block.number for block in report.blocks for tx in block.transactions
                     if tx.tx_id == history.revoked_tx_id)
    config_blocks = [block.number for block in report.blocks if block.config]
    assert report.ok, [check.reason for check in report.failed]
    assert revoked_in and min(revoked_in) > signed_in
    assert config_blocks[0] == 0 and min(revoked_in) in config_blocks


def tampered(chain: Chain, number: int, block: common_pb2.Block) -> list[bytes]:
    blocks = list(chain.blocks)
    blocks[number] = block.SerializeToString()
    return blocks


def endorser_block(chain: Chain, after: int = 1) -> tuple[int, common_pb2.Block]:
    """The first block after ``after`` that holds an endorser transaction."""
    for number in range(after + 1, len(chain.blocks)):
        block = common_pb2.Block.FromString(chain.blocks[number])
        envelope = common_pb2.Envelope.FromString(block.data.data[0])
        header = common_pb2.ChannelHeader.FromString(common_pb2.Payload.FromString(envelope.payload).header.channel_header)
        if header.type == common_pb2.HeaderType.ENDORSER_TRANSACTION:
            return number, block
    raise AssertionError("no endorser transaction on the chain")


def test_a_block_tampered_after_it_was_fetched_is_named_by_number_and_transaction(chains: dict[str, Chain]) -> None:
    chain = chains["Manufacturer"]
    number, block = endorser_block(chain, after=len(chain.blocks) // 2)
    envelope = common_pb2.Envelope.FromString(block.data.data[0])
    tx_id = common_pb2.ChannelHeader.FromString(
        common_pb2.Payload.FromString(envelope.payload).header.channel_header).tx_id
    payload = bytearray(envelope.payload)
    payload[-5] ^= 0x01
    envelope.payload = bytes(payload)
    block.data.data[0] = envelope.SerializeToString()

    report = verify_blocks(tampered(chain, number, block), current_block_hash=chain.current_block_hash)

    assert not report.ok
    assert report.check(Check.DATA_HASHES).problems[0].block_number == number
    assert report.check(Check.CREATOR_SIGNATURES).problems[0].block_number == number
    assert report.check(Check.CREATOR_SIGNATURES).problems[0].tx_id == tx_id
    assert f"block {number}, tx {tx_id}" in report.check(Check.CREATOR_SIGNATURES).reason
    assert report.check(Check.PREVIOUS_HASHES).passed and report.check(Check.CHAIN_INFO).passed


def test_a_rewritten_header_breaks_the_link_to_the_next_block_and_the_orderers_signature(
        chains: dict[str, Chain]) -> None:
    chain = chains["Warehouse"]
    number = len(chain.blocks) // 3
    block = common_pb2.Block.FromString(chain.blocks[number])
    block.header.data_hash = bytes(32)

    report = verify_blocks(tampered(chain, number, block))

    assert [p.block_number for p in report.check(Check.DATA_HASHES).problems] == [number]
    assert [p.block_number for p in report.check(Check.ORDERER_SIGNATURES).problems] == [number]
    assert [p.block_number for p in report.check(Check.PREVIOUS_HASHES).problems] == [number + 1]


def test_a_peer_that_records_a_conflicted_transaction_as_valid_disagrees_with_the_others(
        chains: dict[str, Chain], history: History) -> None:
    honest = chains["Manufacturer"]
    report = verify_chain(honest)
    number = next(block.number for block in report.blocks for tx in block.transactions
                  if tx.tx_id == history.conflicted_tx_id)
    block = common_pb2.Block.FromString(honest.blocks[number])
    flags = common_pb2.BlockMetadataIndex.TRANSACTIONS_FILTER
    block.metadata.metadata[flags] = bytes(len(block.metadata.metadata[flags]))   # every transaction VALID
    lying = Chain(honest.channel, "LiarMSP", honest.address, honest.height, honest.current_block_hash,
                  tuple(tampered(honest, number, block)))

    agreement = compare_chains([honest, chains["Carrier"], lying])

    # The validation codes are the peer's own metadata, outside the orderer's signature: only
    # another organization's peer can contradict them.
    assert agreement.checks[0].passed
    assert [p.block_number for p in agreement.checks[1].problems] == [number]
    assert "LiarMSP" in agreement.checks[1].reason and "MVCC_READ_CONFLICT" in agreement.checks[1].reason


def test_the_chains_the_peers_report_end_where_their_chain_info_says(chains: dict[str, Chain]) -> None:
    report = verify_chain(chains["Carrier"])
    dropped = verify_blocks(chains["Carrier"].blocks[:-1], current_block_hash=chains["Carrier"].current_block_hash)
    skipped = verify_blocks(chains["Carrier"].blocks[:5] + chains["Carrier"].blocks[6:])

    assert report.check(Check.CHAIN_INFO).passed
    assert not dropped.check(Check.CHAIN_INFO).passed
    assert skipped.check(Check.BLOCK_NUMBERS).problems[0].block_number == 6
    assert [p.block_number for p in skipped.check(Check.PREVIOUS_HASHES).problems] == [6]
