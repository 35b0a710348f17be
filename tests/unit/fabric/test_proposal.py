"""Unit tests of proposals: what Fabric peers parse out of them, their transaction id, and their signatures."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature, encode_dss_signature
from fabric_protos.common import common_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2

from fedledger.errors import FabricError
from fedledger.fabric import Gateway, build_proposal, connect
from fedledger.fabric.ca import Enrollment
from fedledger.fabric.identity import P256_ORDER
from fedledger.fabric.proposal import NONCE_BYTES, Proposal

from .certs import self_signed


@pytest.fixture(scope="module")
def enrollment() -> Enrollment:
    return self_signed("client", msp_id="ManufacturerMSP")


@pytest.fixture
def gateway(enrollment: Enrollment) -> Iterator[Gateway]:
    # gRPC connects lazily: nothing is sent unless a test evaluates or submits.
    with connect("127.0.0.1:1", identity=enrollment.identity, signer=enrollment.signer,
                 tls_root_certificates=enrollment.identity.certificate_pem) as gw:
        yield gw


def parse(proposal: Proposal) -> dict[str, object]:
    """Unpack a proposal the way a peer's endorser does."""
    message = proposal_pb2.Proposal.FromString(proposal.bytes())
    header = common_pb2.Header.FromString(message.header)
    channel_header = common_pb2.ChannelHeader.FromString(header.channel_header)
    signature_header = common_pb2.SignatureHeader.FromString(header.signature_header)
    extension = proposal_pb2.ChaincodeHeaderExtension.FromString(channel_header.extension)
    payload = proposal_pb2.ChaincodeProposalPayload.FromString(message.payload)
    spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(payload.input).chaincode_spec
    creator = identities_pb2.SerializedIdentity.FromString(signature_header.creator)
    return {
        "type": channel_header.type, "channel": channel_header.channel_id, "tx_id": channel_header.tx_id,
        "epoch": channel_header.epoch, "seconds": channel_header.timestamp.seconds,
        "header_chaincode": extension.chaincode_id.name, "spec_chaincode": spec.chaincode_id.name,
        "spec_type": spec.type, "args": list(spec.input.args), "transient": dict(payload.TransientMap),
        "msp_id": creator.mspid, "cert": creator.id_bytes,
        "nonce": signature_header.nonce, "creator": signature_header.creator,
    }


def verify(enrollment: Enrollment, signature: bytes, message: bytes) -> None:
    public_key = enrollment.identity.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))


def test_a_proposal_round_trips_through_the_fabric_protos(enrollment: Enrollment) -> None:
    before = int(time.time())

    proposal = build_proposal(enrollment.identity, channel_name="fedledger", chaincode_name="fedledger",
                              transaction_name="RegisterCompany", args=("acme", b"\x00participant\xff", "é"),
                              transient={"secret": b"\x01\x02", "note": "ünïcode"})
    fields = parse(proposal)

    assert fields["type"] == common_pb2.HeaderType.ENDORSER_TRANSACTION
    assert fields["channel"] == "fedledger"
    assert fields["epoch"] == 0
    assert before <= fields["seconds"] <= int(time.time())  # type: ignore[operator]
    assert fields["header_chaincode"] == fields["spec_chaincode"] == "fedledger"
    assert fields["spec_type"] == chaincode_pb2.ChaincodeSpec.Type.GOLANG
    assert fields["args"] == [b"RegisterCompany", b"acme", b"\x00participant\xff", "é".encode()]
    assert fields["transient"] == {"secret": b"\x01\x02", "note": "ünïcode".encode()}
    assert fields["msp_id"] == "ManufacturerMSP"
    assert fields["cert"] == enrollment.identity.certificate_pem
    assert fields["tx_id"] == proposal.tx_id
    assert proposal.channel_name == "fedledger" and proposal.transaction_name == "RegisterCompany"


def test_the_tx_id_is_the_sha256_of_nonce_and_creator_and_never_repeats(enrollment: Enrollment) -> None:
    proposals = [build_proposal(enrollment.identity, channel_name="c", chaincode_name="cc", transaction_name="F")
                 for _ in range(50)]

    for proposal in proposals:
        fields = parse(proposal)
        nonce, creator = fields["nonce"], fields["creator"]
        assert isinstance(nonce, bytes) and isinstance(creator, bytes)
        assert len(nonce) == NONCE_BYTES
        assert proposal.tx_id == hashlib.sha256(nonce + creator).hexdigest()
    assert len({p.tx_id for p in proposals}) == len(proposals)


def test_a_named_contract_qualifies_transaction_names(gateway: Gateway) -> None:
    network = gateway.network("fedledger")

    plain = network.contract("fedledger").new_proposal("Version")
    named = network.contract("fedledger", "fedledger").new_proposal("Version", ("x",))

    assert parse(plain)["args"] == [b"Version"]
    assert parse(named)["args"] == [b"fedledger:Version", b"x"]
    assert named.transaction_name == "fedledger:Version"


def test_the_gateway_signs_the_proposal_bytes_with_the_identitys_key(gateway: Gateway, enrollment: Enrollment) -> None:
    proposal = gateway.network("fedledger").contract("fedledger").new_proposal("WhoAmI")

    signed = proposal_pb2.SignedProposal.FromString(proposal.signed_bytes())

    assert signed.proposal_bytes == proposal.bytes()
    verify(enrollment, signed.signature, proposal.bytes())
    _, s = decode_dss_signature(signed.signature)
    assert s <= P256_ORDER // 2


def test_off_line_signing_of_the_digest_gives_the_same_signed_proposal(gateway: Gateway,
                                                                       enrollment: Enrollment) -> None:
    proposal = gateway.network("fedledger").contract("fedledger").new_proposal("Version", ("a",))
    # An off-line signer (an HSM, say) holds the key and signs the pre-hashed digest.
    key = serialization.load_pem_private_key(enrollment.signer.private_pem(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(proposal.digest(), ec.ECDSA(Prehashed(hashes.SHA256()))))
    off_line_signature = encode_dss_signature(r, min(s, P256_ORDER - s))

    off_line = proposal_pb2.SignedProposal.FromString(proposal.with_signature(off_line_signature).signed_bytes())
    online = proposal_pb2.SignedProposal.FromString(proposal.signed_bytes())

    assert proposal.digest() == hashlib.sha256(proposal.bytes()).digest()
    assert off_line.proposal_bytes == online.proposal_bytes == proposal.bytes()
    assert off_line.signature == off_line_signature
    verify(enrollment, off_line.signature, proposal.bytes())
    verify(enrollment, online.signature, proposal.bytes())


def test_an_unsigned_proposal_without_a_signer_says_how_to_sign_it(enrollment: Enrollment) -> None:
    unconnected = build_proposal(enrollment.identity, channel_name="c", chaincode_name="cc", transaction_name="F")
    with connect("127.0.0.1:1", identity=enrollment.identity, signer=None,
                 tls_root_certificates=enrollment.identity.certificate_pem) as gw:
        no_signer = gw.network("c").contract("cc")

        with pytest.raises(FabricError, match="with_signature"):
            unconnected.signed_bytes()
        with pytest.raises(FabricError, match=r"not signed and the gateway has no signer.*with_signature"):
            no_signer.evaluate("F")
        with pytest.raises(FabricError, match="not connected to a gateway"):
            unconnected.with_signature(b"sig").evaluate()


def test_bad_arguments_are_refused_before_anything_is_sent(enrollment: Enrollment) -> None:
    def build(**kwargs: object) -> Proposal:
        return build_proposal(enrollment.identity, channel_name="c", chaincode_name="cc",
                              transaction_name="F", **kwargs)  # type: ignore[arg-type]

    with pytest.raises(FabricError, match=r"not a single str: write \('acme',\)"):
        build(args="acme")
    with pytest.raises(FabricError, match="argument 1 must be str or bytes, not int"):
        build(args=("a", 7))
    with pytest.raises(FabricError, match="transient value 'k' must be str or bytes"):
        build(transient={"k": 1.5})
    with pytest.raises(FabricError, match="needs a chaincode name"):
        build_proposal(enrollment.identity, channel_name="c", chaincode_name="", transaction_name="F")
    with pytest.raises(FabricError, match="empty signature"):
        build().with_signature(b"")
