"""Unit tests of endorsed transactions and commit status: the result, what is signed, and invalid commits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import proposal_pb2, proposal_response_pb2, transaction_pb2

from fedledger.errors import CommitError, FabricError
from fedledger.fabric import Status, SubmittedTransaction, Transaction
from fedledger.fabric.ca import Enrollment
from fedledger.fabric.client import GatewayClient, Timeouts
from fedledger.fabric.commit import validation_code_name
from fedledger.fabric.transaction import transaction_result

from .certs import self_signed


@pytest.fixture(scope="module")
def enrollment() -> Enrollment:
    return self_signed("client", msp_id="WarehouseMSP")


@pytest.fixture
def client(enrollment: Enrollment) -> Iterator[GatewayClient]:
    channel = grpc.insecure_channel("127.0.0.1:1")  # never used: nothing here calls the gateway
    yield GatewayClient(channel, address="127.0.0.1:1", identity=enrollment.identity,
                        signer=enrollment.signer, timeouts=Timeouts())
    channel.close()


def prepared_payload(result: bytes) -> bytes:
    """A prepared transaction's payload as the gateway assembles it, carrying ``result``."""
    action = proposal_pb2.ChaincodeAction(response=proposal_response_pb2.Response(status=200, payload=result))
    response_payload = proposal_response_pb2.ProposalResponsePayload(
        proposal_hash=b"h" * 32, extension=action.SerializeToString())
    action_payload = transaction_pb2.ChaincodeActionPayload(action=transaction_pb2.ChaincodeEndorsedAction(
        proposal_response_payload=response_payload.SerializeToString()))
    transaction = transaction_pb2.Transaction(actions=[transaction_pb2.TransactionAction(
        header=b"signature header", payload=action_payload.SerializeToString())])
    return bytes(common_pb2.Payload(header=common_pb2.Header(), data=transaction.SerializeToString())
                 .SerializeToString())


def test_the_result_is_read_from_the_prepared_transaction() -> None:
    assert transaction_result(prepared_payload(b'{"version":"0.1.0"}')) == b'{"version":"0.1.0"}'
    assert transaction_result(prepared_payload(b"")) == b""
    with pytest.raises(FabricError, match="no actions"):
        transaction_result(common_pb2.Payload().SerializeToString())
    with pytest.raises(FabricError, match="does not parse"):
        transaction_result(b"\xff\xff\xff")


def test_a_transaction_is_signed_over_its_envelope_payload(client: GatewayClient, enrollment: Enrollment) -> None:
    payload = prepared_payload(b"ok")
    transaction = Transaction(payload, tx_id="t1", channel_name="fedledger", transaction_name="F", client=client)

    envelope = transaction._envelope()
    signed_off_line = transaction.with_signature(b"sig")._envelope()

    assert transaction.result == b"ok"
    assert transaction.bytes() == payload and transaction.digest() == hashlib.sha256(payload).digest()
    assert envelope.payload == payload
    public_key = enrollment.identity.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(envelope.signature, payload, ec.ECDSA(hashes.SHA256()))
    assert signed_off_line.signature == b"sig"


def test_the_commit_status_request_names_the_transaction_and_the_caller(client: GatewayClient) -> None:
    submitted = SubmittedTransaction(client, tx_id="t2", channel_name="fedledger", transaction_name="F", result=b"r")

    request = gateway_pb2.CommitStatusRequest.FromString(submitted.bytes())

    assert (request.transaction_id, request.channel_id, request.identity) == ("t2", "fedledger", client.creator)
    assert submitted.digest() == hashlib.sha256(submitted.bytes()).digest()
    assert submitted.with_signature(b"s").bytes() == submitted.bytes()
    assert submitted.result == b"r"


def test_validation_codes_have_fabrics_names_and_only_valid_is_successful() -> None:
    assert validation_code_name(0) == "VALID"
    assert validation_code_name(11) == "MVCC_READ_CONFLICT"
    assert validation_code_name(10) == "ENDORSEMENT_POLICY_FAILURE"
    assert validation_code_name(9999) == "UNKNOWN_VALIDATION_CODE_9999"
    assert Status("VALID", 7, "t").successful
    assert not Status("MVCC_READ_CONFLICT", 7, "t").successful


def test_a_commit_error_names_the_transaction_its_code_and_what_to_do() -> None:
    err = CommitError("t3", "MVCC_READ_CONFLICT", block_number=12)

    assert str(err) == ("transaction t3 failed to commit in block 12: MVCC_READ_CONFLICT; another transaction "
                        "changed what it read before it committed; submit it again")
    assert (err.tx_id, err.code, err.block_number) == ("t3", "MVCC_READ_CONFLICT", 12)
    assert "endorsement policy" in str(CommitError("t4", "ENDORSEMENT_POLICY_FAILURE"))
