"""Chaincode proposals: build, sign (online or off-line), evaluate, and endorse.

A proposal is Fabric's ``Proposal`` message: a ``Header`` (the channel header naming the channel,
transaction id, time and chaincode; the signature header naming the creator and a fresh nonce)
and a ``ChaincodeProposalPayload`` (the invocation spec's arguments and the transient map). The
transaction id is ``hex(sha256(nonce + creator))``: peers recompute it and refuse a mismatch, and
the random nonce makes every proposal's id unique.

:meth:`Proposal.bytes` is exactly what the creator signs; :meth:`Proposal.digest` is its SHA-256
for signers (HSMs, remote signers) that take a pre-hashed message.
"""

from __future__ import annotations

import builtins  # bytes() methods shadow the builtin inside their classes
import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2
from google.protobuf import timestamp_pb2
from google.protobuf.message import DecodeError

from fedledger.errors import FabricError, GatewayError, SubmitError
from fedledger.fabric.client import GatewayClient, serialized_identity
from fedledger.fabric.identity import Identity
from fedledger.fabric.transaction import Transaction

# Bytes of randomness in each proposal, as the Fabric SDKs use: a tx id never repeats by chance.
NONCE_BYTES = 24

Args = Sequence[str | bytes]
Transient = Mapping[str, str | bytes]


def _as_bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise FabricError(f"{what} must be str or bytes, not {type(value).__name__}")


def encode_args(args: Args) -> list[bytes]:
    """Chaincode arguments as bytes (str encoded UTF-8)."""
    if isinstance(args, (str, bytes)):
        # A lone string is a sequence of characters: almost certainly a missing tuple.
        raise FabricError(f"args must be a sequence of arguments, not a single {type(args).__name__}: "
                          f"write ({args!r},)")
    return [_as_bytes(arg, f"argument {i}") for i, arg in enumerate(args)]


def encode_transient(transient: Transient | None) -> dict[str, bytes]:
    """A transient map with its values as bytes (str encoded UTF-8)."""
    return {str(key): _as_bytes(value, f"transient value {key!r}") for key, value in (transient or {}).items()}


def transaction_id(nonce: bytes, creator: bytes) -> str:
    """Fabric's transaction id: lower-case hex SHA-256 of nonce followed by creator."""
    return hashlib.sha256(nonce + creator).hexdigest()


def build_proposal(identity: Identity, *, channel_name: str, chaincode_name: str, transaction_name: str,
                   args: Args = (), transient: Transient | None = None, endorsing_organizations: Sequence[str] = (),
                   client: GatewayClient | None = None) -> Proposal:
    """Build an unsigned proposal to invoke ``transaction_name`` on a chaincode (no network needed).

    Parameters
    ----------
    identity
        The creator: its MSP id and certificate go into the signature header.
    channel_name, chaincode_name
        Where the transaction runs.
    transaction_name
        The chaincode function, ``"Contract:Function"`` for a named contract.
    args
        The function's arguments, str (sent as UTF-8) or bytes.
    transient
        Private inputs the peers see but the ledger does not record.
    endorsing_organizations
        MSP ids whose peers must endorse (or, to evaluate, the peers to ask); by default the
        gateway chooses from the endorsement policy.
    client
        The gateway connection that evaluates or endorses it (none: only signing is possible).

    Returns
    -------
    Proposal
        Unsigned: the gateway's signer signs it when it is sent, or sign :meth:`Proposal.digest`
        off-line and attach the signature with :meth:`Proposal.with_signature`.
    """
    for what, value in (("channel name", channel_name), ("chaincode name", chaincode_name),
                        ("transaction name", transaction_name)):
        if not value:
            raise FabricError(f"a proposal needs a {what}")
    arguments = encode_args(args)
    transient_map = encode_transient(transient)
    creator = serialized_identity(identity)
    nonce = os.urandom(NONCE_BYTES)
    tx_id = transaction_id(nonce, creator)

    now = time.time_ns()
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.HeaderType.ENDORSER_TRANSACTION,
        channel_id=channel_name,
        tx_id=tx_id,
        timestamp=timestamp_pb2.Timestamp(seconds=now // 1_000_000_000, nanos=now % 1_000_000_000),
        epoch=0,
        extension=proposal_pb2.ChaincodeHeaderExtension(
            chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode_name)).SerializeToString(),
    )
    signature_header = common_pb2.SignatureHeader(creator=creator, nonce=nonce)
    header = common_pb2.Header(channel_header=channel_header.SerializeToString(),
                               signature_header=signature_header.SerializeToString())
    invocation = chaincode_pb2.ChaincodeInvocationSpec(chaincode_spec=chaincode_pb2.ChaincodeSpec(
        type=chaincode_pb2.ChaincodeSpec.Type.GOLANG,
        chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode_name),
        input=chaincode_pb2.ChaincodeInput(args=[transaction_name.encode("utf-8"), *arguments]),
    ))
    payload = proposal_pb2.ChaincodeProposalPayload(input=invocation.SerializeToString(), TransientMap=transient_map)
    proposal = proposal_pb2.Proposal(header=header.SerializeToString(), payload=payload.SerializeToString())
    return Proposal(bytes(proposal.SerializeToString()), tx_id=tx_id, channel_name=channel_name,
                    transaction_name=transaction_name, endorsing_organizations=endorsing_organizations,
                    client=client)


class Proposal:
    """A chaincode proposal: its bytes to sign, its transaction id, and the calls that use it.

    Immutable: :meth:`with_signature` returns a signed copy. Unsigned proposals are signed with
    the gateway's signer when evaluated or endorsed.
    """

    def __init__(self, proposal_bytes: builtins.bytes, *, tx_id: str, channel_name: str, transaction_name: str,
                 endorsing_organizations: Sequence[str] = (), signature: builtins.bytes | None = None,
                 client: GatewayClient | None = None) -> None:
        self._bytes = proposal_bytes
        self.tx_id = tx_id
        self.channel_name = channel_name
        self.transaction_name = transaction_name
        self.endorsing_organizations = tuple(endorsing_organizations)
        self.signature = signature
        self._client = client

    def __repr__(self) -> str:
        signed = "signed" if self.signature else "unsigned"
        return f"Proposal({self.transaction_name!r}, tx_id={self.tx_id[:16]}, {signed})"

    def digest(self) -> builtins.bytes:
        """SHA-256 of :meth:`bytes`: the pre-hashed message for off-line ECDSA signers."""
        return hashlib.sha256(self._bytes).digest()

    def with_signature(self, signature: builtins.bytes) -> Proposal:
        """A copy carrying ``signature``: the creator's DER ECDSA signature over :meth:`bytes`."""
        if not signature:
            raise FabricError(f"an empty signature for proposal {self.tx_id}")
        return Proposal(self._bytes, tx_id=self.tx_id, channel_name=self.channel_name,
                        transaction_name=self.transaction_name,
                        endorsing_organizations=self.endorsing_organizations, signature=signature,
                        client=self._client)

    def _gateway(self) -> GatewayClient:
        if self._client is None:
            raise FabricError(f"proposal {self.tx_id} is not connected to a gateway: build it with "
                              f"Contract.new_proposal()")
        return self._client

    def _signed(self, client: GatewayClient | None) -> Any:
        if self.signature:
            return proposal_pb2.SignedProposal(proposal_bytes=self._bytes, signature=self.signature)
        if client is None:
            raise FabricError(f"proposal {self.tx_id} is not signed: sign its digest() off-line and "
                              f"pass the signature to with_signature()")
        signature = client.sign(self._bytes, f"proposal {self.tx_id}")
        return proposal_pb2.SignedProposal(proposal_bytes=self._bytes, signature=signature)

    def signed_bytes(self) -> builtins.bytes:
        """The serialized ``SignedProposal``, signed now with the gateway's signer if not signed yet."""
        return bytes(self._signed(self._client).SerializeToString())

    def evaluate(self) -> builtins.bytes:
        """Run the transaction on one peer without ordering it, and return its result."""
        client = self._gateway()
        request = gateway_pb2.EvaluateRequest(
            transaction_id=self.tx_id, channel_id=self.channel_name,
            proposed_transaction=self._signed(client),
            target_organizations=list(self.endorsing_organizations),
        )
        operation = f"evaluating {self.transaction_name} (tx {self.tx_id}) on channel {self.channel_name}"
        response = client.evaluate(request, operation)
        result = response.result
        if int(result.status) >= 400:
            raise GatewayError(f"{operation} failed: status {result.status}: {result.message}",
                               code="UNKNOWN", address=client.address)
        return bytes(result.payload)

    def endorse(self) -> Transaction:
        """Collect endorsements (the gateway picks peers that satisfy the policy, unless organizations
        were named) and return the prepared transaction, ready to sign and submit."""
        client = self._gateway()
        request = gateway_pb2.EndorseRequest(
            transaction_id=self.tx_id, channel_id=self.channel_name,
            proposed_transaction=self._signed(client),
            endorsing_organizations=list(self.endorsing_organizations),
        )
        operation = f"endorsing {self.transaction_name} (tx {self.tx_id}) on channel {self.channel_name}"
        response = client.endorse(request, operation)
        # Every Proposal is built here (build_proposal, or a signed copy of one): its id is minted.
        return Transaction(bytes(response.prepared_transaction.payload), tx_id=self.tx_id,
                           channel_name=self.channel_name, transaction_name=self.transaction_name,
                           client=client, minted=True)

    def bytes(self) -> builtins.bytes:
        """The serialized ``Proposal``: exactly the bytes the creator's signature covers."""
        return self._bytes


def chain_height(client: GatewayClient, channel_name: str, *, tx_id: str, operation: str) -> int:
    """A lower bound of ``channel_name``'s height, taken just before transaction ``tx_id`` is submitted.

    Any transaction submitted after this commits in a block numbered at least this: one committed in
    an earlier block was on the ledger before the submission (a replay). With a signer the gateway's
    peer is asked (system chaincode qscc, ``GetChainInfo``: one evaluation on the local peer);
    without one (off-line signing) the height is the greatest this connection has seen, 0 if none.

    Raises
    ------
    AccessDeniedError
        The peer refused the gateway's identity.
    SubmitError
        The height could not be read; nothing was submitted.
    """
    known = client.known_height(channel_name)
    if client.signer is None:
        return known
    proposal = build_proposal(client.identity, channel_name=channel_name, chaincode_name="qscc",
                              transaction_name="GetChainInfo", args=(channel_name,), client=client)
    request = gateway_pb2.EvaluateRequest(transaction_id=proposal.tx_id, channel_id=channel_name,
                                          proposed_transaction=proposal._signed(client))
    reading = f"{operation}: reading the channel's height first (nothing is sent to ordering if this fails)"
    result = client.evaluate(request, reading, error=SubmitError, tx_id=tx_id).result
    if int(result.status) >= 400:
        raise SubmitError(tx_id, f"{reading} failed: qscc answered status {result.status}: {result.message}",
                          code="UNKNOWN", address=client.address)
    try:
        height = int(ledger_pb2.BlockchainInfo.FromString(result.payload).height)
    except DecodeError:
        raise SubmitError(tx_id, f"{reading} failed: qscc's answer is not a BlockchainInfo", code="UNKNOWN",
                          address=client.address) from None
    client.observe_height(channel_name, height)
    return max(height, known)
