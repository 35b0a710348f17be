"""Endorsed transactions: the prepared envelope the gateway returns, signed and sent to ordering.

The gateway assembles the endorsed transaction into a ``common.Envelope`` whose payload the
creator must sign (the orderer and the committing peers check that signature). :meth:`bytes` is
that payload; :meth:`digest` its SHA-256 for off-line signers.
"""

from __future__ import annotations

import builtins  # bytes() methods shadow the builtin inside their classes
import hashlib
from typing import Any

from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from google.protobuf.message import DecodeError

from fedledger.errors import FabricError
from fedledger.fabric.client import GatewayClient
from fedledger.fabric.commit import SubmittedTransaction


def transaction_result(payload_bytes: bytes) -> bytes:
    """The chaincode's return value recorded in a prepared transaction's payload.

    It sits in ``Payload.data`` -> ``Transaction.actions[0]`` -> ``ChaincodeActionPayload.action``
    -> ``ProposalResponsePayload.extension`` -> ``ChaincodeAction.response.payload``.
    """
    try:
        payload = common_pb2.Payload.FromString(payload_bytes)
        transaction = transaction_pb2.Transaction.FromString(payload.data)
        if not transaction.actions:
            raise FabricError("the prepared transaction has no actions")
        action_payload = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
        response_payload = proposal_response_pb2.ProposalResponsePayload.FromString(
            action_payload.action.proposal_response_payload)
        action = proposal_pb2.ChaincodeAction.FromString(response_payload.extension)
    except DecodeError as err:
        raise FabricError(f"the gateway returned a prepared transaction that does not parse: {err}") from None
    return bytes(action.response.payload)


def transaction_header(payload_bytes: bytes) -> tuple[str, str, str]:
    """(transaction id, channel, transaction name) recorded in a prepared transaction's payload."""
    try:
        payload = common_pb2.Payload.FromString(payload_bytes)
        channel_header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
        transaction = transaction_pb2.Transaction.FromString(payload.data)
        name = ""
        if transaction.actions:
            action_payload = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
            proposal_payload = proposal_pb2.ChaincodeProposalPayload.FromString(
                action_payload.chaincode_proposal_payload)
            args = chaincode_pb2.ChaincodeInvocationSpec.FromString(proposal_payload.input).chaincode_spec.input.args
            name = args[0].decode("utf-8", "replace") if args else ""
    except DecodeError as err:
        raise FabricError(f"the prepared transaction does not parse: {err}") from None
    if not channel_header.tx_id:
        raise FabricError("the prepared transaction names no transaction id")
    return str(channel_header.tx_id), str(channel_header.channel_id), name or "transaction"


class Transaction:
    """An endorsed transaction, not yet ordered: its result, and the payload to sign and submit.

    Immutable: :meth:`with_signature` returns a signed copy. An unsigned transaction is signed with
    the gateway's signer when submitted.
    """

    def __init__(self, payload_bytes: builtins.bytes, *, tx_id: str, channel_name: str, transaction_name: str,
                 client: GatewayClient, signature: builtins.bytes | None = None, minted: bool = False) -> None:
        self._payload = payload_bytes
        self.tx_id = tx_id
        self.channel_name = channel_name
        self.transaction_name = transaction_name
        self.signature = signature
        self._client = client
        # Endorsed from a proposal this process built (its id from a nonce drawn here): it can be on
        # the ledger only if this connection sent it there.
        self._minted = minted
        self.result = transaction_result(payload_bytes)

    def __repr__(self) -> str:
        signed = "signed" if self.signature else "unsigned"
        return f"Transaction({self.transaction_name!r}, tx_id={self.tx_id[:16]}, {signed})"

    def digest(self) -> builtins.bytes:
        """SHA-256 of :meth:`bytes`: the pre-hashed message for off-line ECDSA signers."""
        return hashlib.sha256(self._payload).digest()

    def with_signature(self, signature: builtins.bytes) -> Transaction:
        """A copy carrying ``signature``: the creator's DER ECDSA signature over :meth:`bytes`."""
        if not signature:
            raise FabricError(f"an empty signature for transaction {self.tx_id}")
        return Transaction(self._payload, tx_id=self.tx_id, channel_name=self.channel_name,
                           transaction_name=self.transaction_name, client=self._client, signature=signature,
                           minted=self._minted)

    def _envelope(self) -> Any:
        signature = self.signature or self._client.sign(self._payload, f"transaction {self.tx_id}")
        return common_pb2.Envelope(payload=self._payload, signature=signature)

    def submit(self) -> SubmittedTransaction:
        """Send the signed transaction to the ordering service; returns once an orderer accepted it.

        The ordering service accepts an envelope it has already ordered, and the peers then mark the
        copy ``DUPLICATE_TXID``; the commit status still finds the original. So the channel's height is
        taken first (:func:`~fedledger.fabric.proposal.chain_height`), and a commit status in an older
        block is refused as a replay (:class:`~fedledger.errors.ReplayedTransactionError`). A
        transaction endorsed from a proposal built here and sent for the first time through this
        connection cannot be a replay (its id comes from a nonce drawn here): its height is the one
        this connection has seen, and no read is made.

        Raises
        ------
        SubmitError
            No orderer accepted it (the error names the orderers and their reasons), or the channel's
            height could not be read first (then nothing was sent).
        AccessDeniedError
            The peer or the ordering service refused the identity (the error says why, where it can).
        """
        # proposal.py imports this module (an endorsement returns a Transaction): import it here.
        from fedledger.fabric.proposal import chain_height

        operation = f"submitting {self.transaction_name} (tx {self.tx_id}) on channel {self.channel_name}"
        envelope = self._envelope()
        if self._client.first_submission(self.tx_id) and self._minted:
            height = self._client.known_height(self.channel_name)
        else:
            height = chain_height(self._client, self.channel_name, tx_id=self.tx_id, operation=operation)
        request = gateway_pb2.SubmitRequest(transaction_id=self.tx_id, channel_id=self.channel_name,
                                            prepared_transaction=envelope)
        self._client.submit(request, operation)
        return SubmittedTransaction(self._client, tx_id=self.tx_id, channel_name=self.channel_name,
                                    transaction_name=self.transaction_name, result=self.result,
                                    height_before=height)

    def bytes(self) -> builtins.bytes:
        """The envelope's payload: exactly the bytes the creator's signature covers."""
        return self._payload
