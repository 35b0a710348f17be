"""Commit status: whether, and in which block, a submitted transaction was committed as valid.

The gateway's ``CommitStatus`` call takes a ``CommitStatusRequest`` signed by the client (the peer
checks the signer may read the channel) and blocks until the transaction is in a block.
"""

from __future__ import annotations

import builtins  # bytes() methods shadow the builtin inside their classes
import hashlib
from dataclasses import dataclass
from typing import Any

from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import transaction_pb2

from fedledger.errors import FabricError, ReplayedTransactionError
from fedledger.fabric.client import GatewayClient


def validation_code_name(code: int) -> str:
    """The ``TxValidationCode`` name of a number (``0`` -> ``"VALID"``)."""
    try:
        return str(transaction_pb2.TxValidationCode.Name(code))
    except ValueError:
        return f"UNKNOWN_VALIDATION_CODE_{code}"


@dataclass(frozen=True)
class Status:
    """How a transaction committed: its validation code's name and its block."""

    code: str
    block_number: int
    tx_id: str

    @property
    def successful(self) -> bool:
        """Whether the transaction committed as valid (its writes are on the ledger)."""
        return self.code == "VALID"


def replay_checked(status: Status, *, height_before: int) -> Status:
    """``status``, unless it cannot be the status of a submission made at channel height ``height_before``.

    A submission commits in block ``height_before`` or later; a status in an earlier block is the
    original's, found by the replayed envelope's transaction id.

    Raises
    ------
    ReplayedTransactionError
        ``status.block_number`` is below ``height_before``.
    """
    if status.block_number < height_before:
        raise ReplayedTransactionError(status.tx_id, status.block_number, original_code=status.code,
                                       height=height_before)
    return status


def commit_status_request(client: GatewayClient, *, channel_name: str, tx_id: str) -> bytes:
    """A serialized ``CommitStatusRequest`` for ``tx_id``, naming the client's identity."""
    return bytes(gateway_pb2.CommitStatusRequest(
        transaction_id=tx_id, channel_id=channel_name, identity=client.creator).SerializeToString())


class SubmittedTransaction:
    """A transaction the ordering service accepted: its result now, its commit status when it commits.

    :meth:`status` signs a commit status request with the gateway's signer; to sign it off-line,
    sign :meth:`digest` and call :meth:`with_signature` first. ``height_before`` is the channel's
    height just before the submission (0 when unknown): this submission can only commit in that
    block or a later one.
    """

    def __init__(self, client: GatewayClient, *, tx_id: str, channel_name: str, transaction_name: str,
                 result: builtins.bytes, request: builtins.bytes | None = None,
                 signature: builtins.bytes | None = None, height_before: int = 0) -> None:
        self._client = client
        self.tx_id = tx_id
        self.channel_name = channel_name
        self.transaction_name = transaction_name
        self.result = result
        self.height_before = height_before
        self._request = request or commit_status_request(client, channel_name=channel_name, tx_id=tx_id)
        self.signature = signature
        self._status: Status | None = None

    def __repr__(self) -> str:
        return f"SubmittedTransaction({self.transaction_name!r}, tx_id={self.tx_id[:16]})"

    def digest(self) -> builtins.bytes:
        """SHA-256 of :meth:`bytes`: the pre-hashed message for off-line ECDSA signers."""
        return hashlib.sha256(self._request).digest()

    def with_signature(self, signature: builtins.bytes) -> SubmittedTransaction:
        """A copy whose commit status request carries ``signature`` (over :meth:`bytes`)."""
        if not signature:
            raise FabricError(f"an empty signature for the commit status request of transaction {self.tx_id}")
        return SubmittedTransaction(self._client, tx_id=self.tx_id, channel_name=self.channel_name,
                                    transaction_name=self.transaction_name, result=self.result,
                                    request=self._request, signature=signature, height_before=self.height_before)

    def _signed_request(self) -> Any:
        signature = self.signature or self._client.sign(
            self._request, f"the commit status request of transaction {self.tx_id}")
        return gateway_pb2.SignedCommitStatusRequest(request=self._request, signature=signature)

    def status(self, *, timeout: float | None = None) -> Status:
        """Wait until the transaction is committed and return how (valid or not, and in which block).

        Parameters
        ----------
        timeout
            Seconds to wait; by default the gateway's ``commit_status_timeout``.

        Raises
        ------
        CommitStatusError
            The status could not be read in time or at all; the transaction may still commit.
        ReplayedTransactionError
            The status found is of a block older than this submission: the transaction was on the
            ledger before it was sent (a replayed envelope), and this submission wrote nothing.
        """
        if self._status is None:
            operation = (f"reading the commit status of {self.transaction_name} (tx {self.tx_id}) "
                         f"on channel {self.channel_name}")
            response = self._client.commit_status(self._signed_request(), self.tx_id, operation, timeout)
            self._status = Status(validation_code_name(int(response.result)), int(response.block_number), self.tx_id)
            self._client.observe_height(self.channel_name, self._status.block_number + 1)
        return replay_checked(self._status, height_before=self.height_before)

    def bytes(self) -> builtins.bytes:
        """The serialized ``CommitStatusRequest``: exactly the bytes its signature covers."""
        return self._request
