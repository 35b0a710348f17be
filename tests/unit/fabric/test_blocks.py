"""Unit tests of the ledger audit: chains built in memory the way Fabric builds them, then tampered with.

Each chain has a genesis configuration block (unsigned, as configtxgen makes it) naming two
application organizations and an orderer organization, each with a throwaway P-256 CA; blocks
after it are signed by the orderer the way Fabric's block writer signs them, and hold endorser
transactions signed by their creators and endorsed by the organizations' peers.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from fabric_protos.common import common_pb2, configtx_pb2, ledger_pb2
from fabric_protos.msp import identities_pb2, msp_config_pb2
from fabric_protos.peer import proposal_pb2, proposal_response_pb2, transaction_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.errors import FabricError
from fedledger.fabric.blocks import (
    BlockFetchError,
    Chain,
    ChainReport,
    Check,
    block_data_hash,
    block_hash,
    block_header_bytes,
    block_header_hash,
    compare_chains,
    fetch_chain,
    verify_blocks,
)
from fedledger.fabric.identity import P256_ORDER, Signer

CHANNEL = "fedledger"
VALID = transaction_pb2.TxValidationCode.Value("VALID")
MVCC = transaction_pb2.TxValidationCode.Value("MVCC_READ_CONFLICT")
DUPLICATE = transaction_pb2.TxValidationCode.Value("DUPLICATE_TXID")
NOW = datetime.datetime.now(datetime.UTC)


# -- a throwaway PKI ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """An identity of an MSP: its certificate and key, and the creator bytes Fabric records."""

    msp_id: str
    certificate: x509.Certificate
    signer: Signer

    @property
    def creator(self) -> bytes:
        pem = self.certificate.public_bytes(serialization.Encoding.PEM)
        return bytes(identities_pb2.SerializedIdentity(mspid=self.msp_id, id_bytes=pem).SerializeToString())


@dataclass(frozen=True)
class Org:
    msp_id: str
    ca: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey

    def issue(self, name: str, *, msp_id: str | None = None) -> Member:
        """A leaf certificate from this org's CA (claiming ``msp_id``, by default the org's own)."""
        signer = Signer.generate()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)]))
            .issuer_name(self.ca.subject).public_key(signer.public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        return Member(msp_id or self.msp_id, certificate, signer)

    def crl(self, *revoked: Member) -> bytes:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ca.subject)
                   .last_update(NOW).next_update(NOW + datetime.timedelta(days=7)))
        for member in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(member.certificate.serial_number)
                .revocation_date(NOW).build())
        return builder.sign(self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def make_org(msp_id: str) -> Org:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, f"ca.{msp_id.lower()}")])
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=2)).not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Org(msp_id, ca, key)


# -- Fabric's messages, built as Fabric builds them --------------------------------------------------


def config_envelope(applications: Sequence[Org], orderers: Sequence[Org], *, crls: dict[str, bytes] | None = None,
                    sequence: int = 0) -> bytes:
    """A ConfigEnvelope whose channel group names each org's MSP (roots and revocation list)."""
    channel_group = configtx_pb2.ConfigGroup()
    for section, orgs in (("Application", applications), ("Orderer", orderers)):
        for org in orgs:
            fabric = msp_config_pb2.FabricMSPConfig(
                name=org.msp_id, root_certs=[org.ca.public_bytes(serialization.Encoding.PEM)],
                revocation_list=[crls[org.msp_id]] if crls and org.msp_id in crls else [])
            msp = msp_config_pb2.MSPConfig(type=0, config=fabric.SerializeToString())
            channel_group.groups[section].groups[org.msp_id].values["MSP"].value = msp.SerializeToString()
    config = configtx_pb2.Config(sequence=sequence, channel_group=channel_group)
    return bytes(configtx_pb2.ConfigEnvelope(config=config).SerializeToString())


def envelope(kind: int, creator: Member | None, data: bytes, *, tx_id: str | None = None,
             channel: str = CHANNEL) -> tuple[bytes, str]:
    """A signed envelope (unsigned without a creator) and its transaction id, sha256(nonce + creator)."""
    nonce = os.urandom(24)
    creator_bytes = creator.creator if creator else b""
    tx_id = tx_id or hashlib.sha256(nonce + creator_bytes).hexdigest()
    channel_header = common_pb2.ChannelHeader(type=kind, channel_id=channel, tx_id=tx_id)
    signature_header = common_pb2.SignatureHeader(creator=creator_bytes, nonce=nonce)
    payload = common_pb2.Payload(header=common_pb2.Header(
        channel_header=channel_header.SerializeToString(), signature_header=signature_header.SerializeToString()),
        data=data).SerializeToString()
    signature = creator.signer.sign(payload) if creator else b""
    return bytes(common_pb2.Envelope(payload=payload, signature=signature).SerializeToString()), tx_id


def endorser_transaction(creator: Member, endorsers: Sequence[Member], *, result: bytes = b"{}") -> tuple[bytes, str]:
    """An endorser transaction: one action whose response payload each endorser signed."""
    action = proposal_pb2.ChaincodeAction(response=proposal_response_pb2.Response(status=200, payload=result))
    response_payload = proposal_response_pb2.ProposalResponsePayload(
        proposal_hash=os.urandom(32), extension=action.SerializeToString()).SerializeToString()
    endorsements = [proposal_response_pb2.Endorsement(endorser=e.creator,
                                                      signature=e.signer.sign(response_payload + e.creator))
                    for e in endorsers]
    action_payload = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=b"proposal", action=transaction_pb2.ChaincodeEndorsedAction(
            proposal_response_payload=response_payload, endorsements=endorsements))
    transaction = transaction_pb2.Transaction(actions=[transaction_pb2.TransactionAction(
        header=b"", payload=action_payload.SerializeToString())])
    return envelope(common_pb2.HeaderType.ENDORSER_TRANSACTION, creator, transaction.SerializeToString())


def genesis_block(config: bytes) -> common_pb2.Block:
    """Block 0 as configtxgen makes it: one unsigned CONFIG envelope, no orderer signature."""
    entry, _ = envelope(common_pb2.HeaderType.CONFIG, None, config)
    block = common_pb2.Block(header=common_pb2.BlockHeader(number=0, previous_hash=b"",
                                                          data_hash=block_data_hash([entry])),
                             data=common_pb2.BlockData(data=[entry]))
    value = common_pb2.OrdererBlockMetadata(last_config=common_pb2.LastConfig(index=0)).SerializeToString()
    block.metadata.metadata.extend([common_pb2.Metadata(value=value).SerializeToString(), b"", bytes([VALID]), b"", b""])
    return block


def sign_block(block: common_pb2.Block, orderer: Member, last_config: int) -> None:
    """Sign as Fabric's block writer does: over metadata value || signature header || header bytes."""
    value = common_pb2.OrdererBlockMetadata(last_config=common_pb2.LastConfig(index=last_config),
                                            consenter_metadata=common_pb2.Metadata().SerializeToString())
    value_bytes = value.SerializeToString()
    signature_header = common_pb2.SignatureHeader(creator=orderer.creator, nonce=os.urandom(24)).SerializeToString()
    header = block_header_bytes(block.header.number, block.header.previous_hash, block.header.data_hash)
    signature = common_pb2.MetadataSignature(signature_header=signature_header,
                                             signature=orderer.signer.sign(value_bytes + signature_header + header))
    block.metadata.metadata[common_pb2.BlockMetadataIndex.SIGNATURES] = common_pb2.Metadata(
        value=value_bytes, signatures=[signature]).SerializeToString()


def reseal(block: common_pb2.Block, orderer: Member, last_config: int) -> None:
    """What a colluding orderer could do after editing a block's data: rehash and re-sign it."""
    block.header.data_hash = block_data_hash(list(block.data.data))
    sign_block(block, orderer, last_config)


def header_hash(block: common_pb2.Block) -> bytes:
    return block_header_hash(block.header.number, block.header.previous_hash, block.header.data_hash)


def next_block(previous: common_pb2.Block, entries: Sequence[bytes], *, orderer: Member, last_config: int,
               flags: Sequence[int] | None = None) -> common_pb2.Block:
    block = common_pb2.Block(header=common_pb2.BlockHeader(
        number=previous.header.number + 1, previous_hash=header_hash(previous), data_hash=block_data_hash(entries)),
        data=common_pb2.BlockData(data=list(entries)))
    codes = bytes(flags if flags is not None else [VALID] * len(entries))
    block.metadata.metadata.extend([b"", b"", codes, b"", b""])
    sign_block(block, orderer, last_config)
    return block


@dataclass
class World:
    """Three organizations and a five-block chain between them."""

    org1: Org
    org2: Org
    orderer_org: Org
    alice: Member       # a client of Org1
    bob: Member         # a client of Org2, revoked by the configuration in block 3
    peer1: Member
    peer2: Member
    orderer: Member
    blocks: list[common_pb2.Block]
    tx_ids: dict[str, str]

    def serialized(self) -> list[bytes]:
        return [bytes(b.SerializeToString()) for b in self.blocks]

    def block(self, number: int) -> common_pb2.Block:
        """A copy of block ``number``, to tamper with."""
        return common_pb2.Block.FromString(self.blocks[number].SerializeToString())

    def append(self, entries: Sequence[bytes], *, flags: Sequence[int] | None = None,
               signer: Member | None = None) -> list[bytes]:
        """The chain with one more block holding ``entries``, signed by the orderer (or ``signer``)."""
        block = next_block(self.blocks[-1], entries, orderer=signer or self.orderer, last_config=3, flags=flags)
        return [*self.serialized(), bytes(block.SerializeToString())]


def build_world() -> World:
    org1, org2, orderer_org = make_org("Org1MSP"), make_org("Org2MSP"), make_org("OrdererMSP")
    alice, bob = org1.issue("alice"), org2.issue("bob")
    peer1, peer2, orderer = org1.issue("peer0.org1"), org2.issue("peer0.org2"), orderer_org.issue("orderer0")
    genesis = genesis_block(config_envelope([org1, org2], [orderer_org]))
    first, first_id = endorser_transaction(alice, [peer1, peer2])
    second, second_id = endorser_transaction(bob, [peer1, peer2])
    conflicted, conflicted_id = endorser_transaction(alice, [peer1, peer2])
    block1 = next_block(genesis, [first], orderer=orderer, last_config=0)
    block2 = next_block(block1, [second, conflicted], orderer=orderer, last_config=0, flags=[VALID, MVCC])
    revoking = config_envelope([org1, org2], [orderer_org], crls={"Org2MSP": org2.crl(bob)}, sequence=1)
    config_entry, config_id = envelope(common_pb2.HeaderType.CONFIG, orderer, revoking)
    block3 = next_block(block2, [config_entry], orderer=orderer, last_config=3)
    fourth, fourth_id = endorser_transaction(alice, [peer1, peer2])
    block4 = next_block(block3, [fourth], orderer=orderer, last_config=3)
    return World(org1, org2, orderer_org, alice, bob, peer1, peer2, orderer, [genesis, block1, block2, block3, block4],
                 {"first": first_id, "second": second_id, "conflicted": conflicted_id, "config": config_id,
                  "fourth": fourth_id})


# One chain for the whole module (hypothesis reuses it too): tests tamper only with copies.
WORLD = build_world()


@pytest.fixture()
def world() -> World:
    return WORLD


def failing(report: ChainReport) -> dict[str, list[tuple[int, str]]]:
    """Each failed check's problems as (block number, tx id)."""
    return {str(c.name): [(p.block_number, p.tx_id) for p in c.problems] for c in report.failed}


# -- Fabric's hashes ---------------------------------------------------------------------------


PREVIOUS = hashlib.sha256(b"previous").digest()
DATA = hashlib.sha256(b"data").digest()


@pytest.mark.parametrize(("number", "previous", "data", "expected"), [
    # Reference values from Go's encoding/asn1 of Fabric's asn1Header (protoutil.BlockHeaderBytes).
    (0, b"", DATA, "ca0f510a0966e4a18bc60b9425322fd8a582dcf255942c6742151db219b17f61"),
    (1, PREVIOUS, DATA, "1f75391ad39c8a4300326be4552c56c485699b1fb628956a72cada36a30bf0b3"),
    (127, PREVIOUS, DATA, "db59320cde2b7f1bfc336da1e2646115bd4119aab4d1f87d5a259cd580768e7f"),
    (128, PREVIOUS, DATA, "c477e57ea2b334ba0ce574d4bf5cbf4cae1fb20bce16edced118f8ebb011849b"),
    (65535, PREVIOUS, b"", "598119139dcf0b3e8cb52b82f66934e564d44779e2e724d82db91b46745c9f75"),
    (1 << 63, PREVIOUS, DATA, "a90e42e052be890fea73dbe647034183eee56b11da90c9dd2723532dc252448a"),
    (300, bytes(200), DATA, "2dc35c80546a2752fb8ab4359ca97e0cd68bd70d124d076746903d30a2f1cfcf"),
])
def test_the_block_header_hash_matches_fabrics_asn1_encoding(number: int, previous: bytes, data: bytes,
                                                             expected: str) -> None:
    assert block_header_hash(number, previous, data).hex() == expected


def test_the_header_bytes_are_a_der_sequence_with_a_positive_integer() -> None:
    encoded = block_header_bytes(128, PREVIOUS, DATA)

    # INTEGER 128 needs a leading zero byte to stay positive in two's complement.
    assert encoded.hex().startswith("3048" + "0202" + "0080" + "0420" + PREVIOUS.hex())
    with pytest.raises(FabricError, match="negative"):
        block_header_bytes(-1, b"", b"")


def test_the_data_hash_is_sha256_of_the_entries_concatenated() -> None:
    assert block_data_hash([b"ab", b"c"]) == hashlib.sha256(b"abc").digest()
    assert block_data_hash([]) == hashlib.sha256(b"").digest()


# -- an untampered chain ---------------------------------------------------------------------------


def test_an_untampered_chain_passes_every_check(world: World) -> None:
    genesis = block_hash(world.serialized()[0])

    report = verify_blocks(world.serialized(), trusted_genesis_hash=genesis,
                           current_block_hash=header_hash(world.blocks[-1]).hex())

    assert report.ok, failing(report)
    assert report.channel == CHANNEL and report.height == 5
    assert [c.name for c in report.checks][-2:] == [Check.GENESIS_BLOCK, Check.CHAIN_INFO]
    assert report.check(Check.ORDERER_SIGNATURES).checked == 4        # every block but the genesis block
    assert report.check(Check.CREATOR_SIGNATURES).checked == 5        # four transactions and one config update
    assert report.check(Check.ENDORSEMENTS).checked == 3              # the conflicted one is not VALID
    assert [b.number for b in report.blocks if b.config] == [0, 3]


def test_the_report_records_each_transaction_and_the_msps_of_each_configuration(world: World) -> None:
    report = verify_blocks(world.serialized())

    block2 = report.blocks[2]
    assert [(tx.tx_id, tx.validation_code) for tx in block2.transactions] == [
        (world.tx_ids["second"], "VALID"), (world.tx_ids["conflicted"], "MVCC_READ_CONFLICT")]
    assert block2.transactions[0].creator_msp_id == "Org2MSP"
    assert block2.transactions[0].endorser_msp_ids == ("Org1MSP", "Org2MSP")
    assert report.blocks[3].transactions[0].type == "CONFIG" and report.blocks[3].orderer_msp_ids == ("OrdererMSP",)
    assert report.blocks[1].previous_hash == report.blocks[0].hash
    revoked = {(m.config_block, m.msp_id): m.revoked_serials for m in report.msps}
    assert revoked[(0, "Org2MSP")] == () and revoked[(3, "Org2MSP")] == (world.bob.certificate.serial_number,)
    assert {m.msp_id for m in report.msps if m.orderer} == {"OrdererMSP"}


def test_a_revocation_applies_from_the_block_after_its_configuration_block(world: World) -> None:
    # Bob signed block 2 before the CRL (block 3) named him: valid then. After it, he is revoked.
    late, late_id = endorser_transaction(world.bob, [world.peer1, world.peer2])

    report = verify_blocks(world.append([late]))

    assert failing(report) == {"creator-certificates": [(5, late_id)]}
    assert "revoked by Org2MSP's CRL" in report.check(Check.CREATOR_CERTIFICATES).reason


# -- tampering, each named by its check, block and transaction ------------------------------------


def test_a_flipped_byte_in_a_payload_breaks_the_data_hash_and_the_creators_signature(world: World) -> None:
    block = world.block(4)
    entry = common_pb2.Envelope.FromString(block.data.data[0])
    # The proposal payload is signed by the creator alone (endorsers sign the response).
    entry.payload = entry.payload.replace(b"proposal", b"proposaL")
    block.data.data[0] = entry.SerializeToString()
    blocks = world.serialized()
    blocks[4] = block.SerializeToString()

    report = verify_blocks(blocks)

    assert failing(report) == {"data-hashes": [(4, "")], "creator-signatures": [(4, world.tx_ids["fourth"])]}
    assert report.check(Check.CREATOR_SIGNATURES).reason == (
        f"block 4, tx {world.tx_ids['fourth']}: creator Org1MSP: the signature does not verify against "
        f"the signer's certificate")


def test_a_colluding_orderer_that_rehashes_and_resigns_an_edited_block_cannot_forge_the_creator(
        world: World) -> None:
    block = world.block(4)
    entry = common_pb2.Envelope.FromString(block.data.data[0])
    entry.payload = entry.payload.replace(b"proposal", b"proposaL")
    block.data.data[0] = entry.SerializeToString()
    reseal(block, world.orderer, last_config=3)
    blocks = world.serialized()
    blocks[4] = block.SerializeToString()

    report = verify_blocks(blocks)

    assert failing(report) == {"creator-signatures": [(4, world.tx_ids["fourth"])]}


def test_a_flipped_byte_in_an_endorsement_signature_is_named(world: World) -> None:
    block = world.block(1)
    entry = common_pb2.Envelope.FromString(block.data.data[0])
    payload = common_pb2.Payload.FromString(entry.payload)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    action = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
    signature = bytearray(action.action.endorsements[1].signature)
    signature[-1] ^= 0x01
    action.action.endorsements[1].signature = bytes(signature)
    transaction.actions[0].payload = action.SerializeToString()
    payload.data = transaction.SerializeToString()
    # The creator re-signs and the orderer re-seals: only the endorsement is left wrong.
    entry.payload = payload.SerializeToString()
    entry.signature = world.alice.signer.sign(entry.payload)
    block.data.data[0] = entry.SerializeToString()
    reseal(block, world.orderer, last_config=0)
    blocks = world.serialized()[:2]
    blocks[1] = block.SerializeToString()

    report = verify_blocks(blocks)

    assert failing(report) == {"endorsements": [(1, world.tx_ids["first"])]}
    assert "endorsement by Org2MSP" in report.check(Check.ENDORSEMENTS).reason


def test_a_changed_previous_hash_breaks_the_link_and_the_orderers_signature(world: World) -> None:
    block = world.block(2)
    block.header.previous_hash = bytes(32)
    blocks = world.serialized()
    blocks[2] = block.SerializeToString()

    report = verify_blocks(blocks)

    # Block 3 names the original block 2's hash, which no longer matches either.
    assert failing(report) == {"previous-hashes": [(2, ""), (3, "")], "orderer-signatures": [(2, "")]}
    assert report.check(Check.PREVIOUS_HASHES).reason.startswith("block 2: previous_hash 0000000000000000...")


def test_a_changed_data_hash_is_named(world: World) -> None:
    block = world.block(3)
    block.header.data_hash = hashlib.sha256(b"something else").digest()
    blocks = world.serialized()
    blocks[3] = block.SerializeToString()

    report = verify_blocks(blocks)

    assert failing(report) == {"data-hashes": [(3, "")], "orderer-signatures": [(3, "")], "previous-hashes": [(4, "")]}


def test_two_swapped_blocks_are_out_of_sequence_and_unlinked(world: World) -> None:
    blocks = world.serialized()
    blocks[1], blocks[2] = blocks[2], blocks[1]

    report = verify_blocks(blocks)

    assert failing(report)["block-numbers"] == [(2, ""), (1, "")]
    assert report.check(Check.BLOCK_NUMBERS).reason.startswith("block 2: found at position 1")
    assert [n for n, _ in failing(report)["previous-hashes"]] == [2, 1, 3]


def test_a_creator_certificate_from_an_unknown_ca_is_refused(world: World) -> None:
    rogue = make_org("Org1MSP")                 # a CA not in the channel claiming Org1's MSP id
    mallory = rogue.issue("alice")
    forged, forged_id = endorser_transaction(mallory, [world.peer1, world.peer2])

    report = verify_blocks(world.append([forged]))

    assert failing(report) == {"creator-certificates": [(5, forged_id)]}
    assert report.check(Check.CREATOR_CERTIFICATES).reason == (
        f"block 5, tx {forged_id}: the creator is not a valid identity: Org1MSP: the certificate "
        f"(issuer CN=ca.org1msp) does not chain to a root CA of Org1MSP")


def test_a_creator_naming_an_msp_outside_the_channel_is_refused(world: World) -> None:
    outsider = make_org("Org9MSP").issue("eve")
    entry, tx_id = endorser_transaction(outsider, [world.peer1, world.peer2])

    report = verify_blocks(world.append([entry]))

    assert failing(report) == {"creator-certificates": [(5, tx_id)]}
    assert "no MSP 'Org9MSP' in the channel configuration of block 3" in report.check(Check.CREATOR_CERTIFICATES).reason


def test_a_high_s_creator_signature_is_refused_though_ecdsa_accepts_it(world: World) -> None:
    entry_bytes, tx_id = endorser_transaction(world.alice, [world.peer1, world.peer2])
    entry = common_pb2.Envelope.FromString(entry_bytes)
    r, s = decode_dss_signature(entry.signature)
    entry.signature = encode_dss_signature(r, P256_ORDER - s)   # the same signature, mirrored: still verifies

    report = verify_blocks(world.append([entry.SerializeToString()]))

    assert failing(report) == {"creator-signatures": [(5, tx_id)]}
    assert "high S value" in report.check(Check.CREATOR_SIGNATURES).reason


def test_a_block_signed_by_an_application_organization_is_refused(world: World) -> None:
    entry, _ = endorser_transaction(world.alice, [world.peer1, world.peer2])

    report = verify_blocks(world.append([entry], signer=world.peer1))

    assert failing(report) == {"orderer-signatures": [(5, "")]}
    assert "Org1MSP is not an organization of the ordering service" in report.check(Check.ORDERER_SIGNATURES).reason


def test_a_block_without_an_orderer_signature_or_with_a_wrong_last_config_is_refused(world: World) -> None:
    unsigned = world.block(4)
    unsigned.metadata.metadata[common_pb2.BlockMetadataIndex.SIGNATURES] = b""
    stale = world.block(4)
    sign_block(stale, world.orderer, last_config=0)       # block 3 is the last configuration block
    blocks = world.serialized()

    without = verify_blocks([*blocks[:4], unsigned.SerializeToString()])
    wrong = verify_blocks([*blocks[:4], stale.SerializeToString()])

    assert failing(without) == {"orderer-signatures": [(4, "")]}
    assert "no orderer signature" in without.check(Check.ORDERER_SIGNATURES).reason
    assert failing(wrong) == {"orderer-signatures": [(4, "")]}
    assert "signed block 0 as the last configuration block, but it is block 3" in wrong.check(
        Check.ORDERER_SIGNATURES).reason


def test_a_replayed_transaction_marked_valid_is_a_duplicate_but_not_when_marked_duplicate(world: World) -> None:
    replay = bytes(world.blocks[1].data.data[0])

    claimed_valid = verify_blocks(world.append([replay], flags=[VALID]))
    marked = verify_blocks(world.append([replay], flags=[DUPLICATE]))

    assert failing(claimed_valid) == {"transaction-ids": [(5, world.tx_ids["first"])]}
    assert "already in block 1" in claimed_valid.check(Check.TRANSACTION_IDS).reason
    assert marked.ok and marked.blocks[5].transactions[0].validation_code == "DUPLICATE_TXID"


def test_a_transaction_id_not_derived_from_nonce_and_creator_is_refused_when_valid(world: World) -> None:
    data = transaction_pb2.Transaction().SerializeToString()
    made_up, tx_id = envelope(common_pb2.HeaderType.ENDORSER_TRANSACTION, world.alice, data, tx_id="f" * 64)

    report = verify_blocks(world.append([made_up]))

    assert tx_id == "f" * 64
    assert failing(report)["transaction-ids"] == [(5, tx_id)]
    assert "sha256(nonce + creator)" in report.check(Check.TRANSACTION_IDS).reason


def test_a_bad_endorsement_fails_only_a_transaction_the_peer_recorded_as_valid(world: World) -> None:
    outsider = make_org("Org2MSP").issue("peer0.org2")   # a peer certificate from a rogue CA
    entry, tx_id = endorser_transaction(world.alice, [world.peer1, outsider])

    valid = verify_blocks(world.append([entry], flags=[VALID]))
    rejected = verify_blocks(world.append([entry], flags=[transaction_pb2.TxValidationCode.Value(
        "ENDORSEMENT_POLICY_FAILURE")]))

    assert failing(valid) == {"endorsements": [(5, tx_id)]}
    assert "endorsement by Org2MSP" in valid.check(Check.ENDORSEMENTS).reason
    assert rejected.ok and rejected.blocks[5].transactions[0].validation_code == "ENDORSEMENT_POLICY_FAILURE"


def test_a_transaction_without_a_recorded_validation_code_is_named(world: World) -> None:
    block = world.block(2)
    block.metadata.metadata[common_pb2.BlockMetadataIndex.TRANSACTIONS_FILTER] = bytes([VALID])
    blocks = world.serialized()
    blocks[2] = block.SerializeToString()

    report = verify_blocks(blocks)

    assert failing(report) == {"validation-codes": [(2, world.tx_ids["conflicted"])]}
    assert report.blocks[2].transactions[1].validation_code == "NOT_RECORDED"


def test_a_validation_code_fabric_does_not_define_is_named(world: World) -> None:
    # The codes are the peer's own metadata, outside the orderer's signature; an undefined one
    # would hide a transaction from the endorsement checks.
    block = world.block(4)
    block.metadata.metadata[common_pb2.BlockMetadataIndex.TRANSACTIONS_FILTER] = bytes([206])
    blocks = world.serialized()
    blocks[4] = block.SerializeToString()

    report = verify_blocks(blocks)

    assert failing(report) == {"validation-codes": [(4, world.tx_ids["fourth"])]}
    assert "validation code 206, which Fabric does not define" in report.check(Check.VALIDATION_CODES).reason


def test_an_undecodable_block_and_a_foreign_channel_are_structure_failures(world: World) -> None:
    foreign, foreign_id = endorser_transaction(world.alice, [world.peer1])
    entry = common_pb2.Envelope.FromString(foreign)
    payload = common_pb2.Payload.FromString(entry.payload)
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    header.channel_id = "other"
    payload.header.channel_header = header.SerializeToString()
    entry.payload = payload.SerializeToString()
    entry.signature = world.alice.signer.sign(entry.payload)

    garbled = verify_blocks([*world.serialized(), b"\xff\xff\xff"])
    elsewhere = verify_blocks(world.append([entry.SerializeToString()]))

    assert failing(garbled)["structure"] == [(5, "")]
    assert failing(elsewhere) == {"structure": [(5, foreign_id)]}


def test_the_trusted_genesis_hash_and_the_peers_chain_info_are_held_to_the_chain(world: World) -> None:
    forged_world = build_world()           # the same shape, other CAs: consistent with itself
    trusted = block_hash(world.serialized()[0])
    last = header_hash(world.blocks[-1]).hex()

    forged = verify_blocks(forged_world.serialized(), trusted_genesis_hash=trusted)
    short = verify_blocks(world.serialized()[:-1], current_block_hash=last)

    assert failing(forged) == {"genesis-block": [(0, "")]}
    assert failing(short) == {"chain-info": [(3, "")]}


def test_verifying_nothing_is_a_usage_error() -> None:
    with pytest.raises(FabricError, match="at least its genesis block"):
        verify_blocks([])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_byte_in_a_header_hash_or_a_data_entry_is_detected(data: st.DataObject) -> None:
    world = WORLD
    number = data.draw(st.integers(0, len(world.blocks) - 1), label="block")
    block = world.block(number)
    target = data.draw(st.sampled_from(["previous_hash", "data_hash", "entry"]), label="target")
    mask = data.draw(st.integers(1, 255), label="mask")
    if target == "entry":
        index = data.draw(st.integers(0, len(block.data.data) - 1), label="entry")
        entry = bytearray(block.data.data[index])
        entry[data.draw(st.integers(0, len(entry) - 1), label="byte")] ^= mask
        block.data.data[index] = bytes(entry)
    else:
        value = bytearray(getattr(block.header, target) or bytes(32))
        value[data.draw(st.integers(0, len(value) - 1), label="byte")] ^= mask
        setattr(block.header, target, bytes(value))
    blocks = world.serialized()
    blocks[number] = block.SerializeToString()

    assert not verify_blocks(blocks).ok


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_no_flipped_byte_or_truncation_anywhere_makes_the_verifier_raise(data: st.DataObject) -> None:
    # Block bytes are untrusted input: a malformed certificate, CRL or message is a finding, never an exception.
    blocks = WORLD.serialized()
    number = data.draw(st.integers(0, len(blocks) - 1), label="block")
    raw = bytearray(blocks[number])
    if data.draw(st.booleans(), label="truncate"):
        del raw[data.draw(st.integers(0, len(raw) - 1), label="length"):]
    else:
        raw[data.draw(st.integers(0, len(raw) - 1), label="byte")] ^= data.draw(st.integers(1, 255), label="mask")
    blocks[number] = bytes(raw)

    report = verify_blocks(blocks, current_block_hash=header_hash(WORLD.blocks[-1]).hex())

    assert report.height == len(blocks)


# -- peers compared ----------------------------------------------------------------------------


def chain_of(msp_id: str, blocks: Sequence[bytes]) -> Chain:
    last = block_hash(blocks[-1])
    return Chain(CHANNEL, msp_id, f"peer0.{msp_id.lower()}:7051", len(blocks), last, tuple(blocks))


def test_peers_holding_the_same_chain_agree_even_when_one_is_behind(world: World) -> None:
    blocks = world.serialized()

    agreement = compare_chains([chain_of("Org1MSP", blocks), chain_of("Org2MSP", blocks[:-1])])

    assert agreement.ok and agreement.common_height == 4
    assert [(p.msp_id, p.height) for p in agreement.peers] == [("Org1MSP", 5), ("Org2MSP", 4)]


def test_a_peer_with_another_block_or_other_validation_codes_is_named(world: World) -> None:
    blocks = world.serialized()
    other_block = list(blocks)
    rewritten = world.block(2)
    rewritten.header.data_hash = bytes(32)
    other_block[2] = rewritten.SerializeToString()
    other_codes = list(blocks)
    recoded = world.block(2)
    recoded.metadata.metadata[common_pb2.BlockMetadataIndex.TRANSACTIONS_FILTER] = bytes([VALID, VALID])
    other_codes[2] = recoded.SerializeToString()

    agreement = compare_chains([chain_of("Org1MSP", blocks), chain_of("Org2MSP", other_block),
                                chain_of("Org3MSP", other_codes)])

    same_hashes, same_codes = agreement.checks
    assert not agreement.ok
    assert [p.block_number for p in same_hashes.problems] == [2]
    assert "Org2MSP holds" in same_hashes.reason
    assert [p.block_number for p in same_codes.problems] == [2]
    assert "Org3MSP ['VALID', 'VALID']" in same_codes.reason and "MVCC_READ_CONFLICT" in same_codes.reason


# -- fetching, through a stand-in for the gateway ----------------------------------------------------


class FakeQscc:
    """Answers qscc's GetChainInfo and GetBlockByNumber from a list of blocks, recording each call."""

    def __init__(self, blocks: Sequence[bytes], info: bytes | None = None) -> None:
        self.blocks = list(blocks)
        self.calls: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
        last = common_pb2.Block.FromString(self.blocks[-1])
        self.info = info if info is not None else ledger_pb2.BlockchainInfo(
            height=len(self.blocks), currentBlockHash=header_hash(last)).SerializeToString()
        self.address = "peer0.org2:7051"
        self.identity = Member("Org1MSP", WORLD.alice.certificate, WORLD.alice.signer)

    def network(self, channel: str) -> FakeQscc:
        assert channel == CHANNEL
        return self

    def contract(self, name: str) -> FakeQscc:
        assert name == "qscc"
        return self

    def evaluate(self, name: str, args: Sequence[str], *, endorsing_organizations: Sequence[str]) -> bytes:
        self.calls.append((name, tuple(args), tuple(endorsing_organizations)))
        if name == "GetChainInfo":
            return self.info
        return self.blocks[int(args[1])]


def test_fetching_asks_the_named_organizations_peer_for_every_block_in_order(world: World) -> None:
    qscc = FakeQscc(world.serialized())

    chain = fetch_chain(qscc, CHANNEL, peer_msp_id="Org2MSP", workers=3)  # type: ignore[arg-type]

    assert chain.blocks == tuple(world.serialized()) and chain.height == 5 and chain.msp_id == "Org2MSP"
    assert {call[2] for call in qscc.calls} == {("Org2MSP",)}
    assert sorted(int(args[1]) for name, args, _ in qscc.calls if name == "GetBlockByNumber") == [0, 1, 2, 3, 4]
    assert chain.current_block_hash == header_hash(world.blocks[-1]).hex()
    assert chain.source == "Org2MSP peer via peer0.org2:7051"


def test_a_peer_joined_from_a_snapshot_or_an_unreadable_chain_info_is_a_fetch_error(world: World) -> None:
    snapshot = ledger_pb2.BlockchainInfo(height=9)
    snapshot.bootstrappingSnapshotInfo.lastBlockInSnapshot = 4

    with pytest.raises(BlockFetchError, match="from a snapshot and holds blocks from 5 only"):
        fetch_chain(FakeQscc(world.serialized(), snapshot.SerializeToString()), CHANNEL)  # type: ignore[arg-type]
    with pytest.raises(BlockFetchError, match="chain info does not parse"):
        fetch_chain(FakeQscc(world.serialized(), b"\xff\xff"), CHANNEL)  # type: ignore[arg-type]
    with pytest.raises(FabricError, match="at least one worker"):
        fetch_chain(FakeQscc(world.serialized()), CHANNEL, workers=0)  # type: ignore[arg-type]
