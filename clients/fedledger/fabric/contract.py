"""A smart contract on a channel: evaluate transactions, submit them, or build proposals to sign off-line."""

from __future__ import annotations

from collections.abc import Sequence

from fedledger.errors import CommitError, FabricError, ReplayedTransactionError
from fedledger.fabric.client import GatewayClient
from fedledger.fabric.commit import SubmittedTransaction
from fedledger.fabric.proposal import Args, Proposal, Transient, build_proposal
from fedledger.fabric.transaction import Transaction, transaction_header


# The validation code the peers give a transaction whose id is already on the ledger.
DUPLICATE_TXID = "DUPLICATE_TXID"


class Contract:
    """One chaincode (and, optionally, one named contract within it) on one channel.

    Transactions are named ``"Function"``, or ``"Contract:Function"`` when ``contract_name`` is
    set. Arguments may be str (sent as UTF-8) or bytes; results are the chaincode's raw bytes.
    """

    def __init__(self, client: GatewayClient, *, channel_name: str, chaincode_name: str,
                 contract_name: str | None = None) -> None:
        if not chaincode_name:
            raise FabricError("a contract needs a chaincode name")
        self._client = client
        self.channel_name = channel_name
        self.chaincode_name = chaincode_name
        self.contract_name = contract_name

    def __repr__(self) -> str:
        named = f", contract_name={self.contract_name!r}" if self.contract_name else ""
        return f"Contract({self.chaincode_name!r}{named}, channel={self.channel_name!r})"

    def _qualified(self, name: str) -> str:
        if not name:
            raise FabricError(f"a transaction name is needed to call chaincode {self.chaincode_name}")
        return f"{self.contract_name}:{name}" if self.contract_name else name

    def new_proposal(self, name: str, args: Args = (), *, transient: Transient | None = None,
                     endorsing_organizations: Sequence[str] | None = None) -> Proposal:
        """An unsigned proposal for transaction ``name``: to sign off-line, evaluate or endorse.

        Sign :meth:`Proposal.digest` elsewhere and attach it with :meth:`Proposal.with_signature`;
        otherwise the gateway's signer signs it when it is sent.
        """
        return build_proposal(self._client.identity, channel_name=self.channel_name,
                              chaincode_name=self.chaincode_name, transaction_name=self._qualified(name),
                              args=args, transient=transient,
                              endorsing_organizations=endorsing_organizations or (), client=self._client)

    def new_signed_transaction(self, payload: bytes, signature: bytes) -> Transaction:
        """An endorsed transaction signed off-line, rebuilt from :meth:`Transaction.bytes` and its signature.

        Its id, channel and name are read from ``payload``. Submitting it again once it is committed
        is a replay: :meth:`SubmittedTransaction.status` then raises
        :class:`~fedledger.errors.ReplayedTransactionError`.

        Raises
        ------
        FabricError
            ``payload`` does not parse, names another channel, or ``signature`` is empty.
        """
        tx_id, channel_name, name = transaction_header(payload)
        if channel_name != self.channel_name:
            raise FabricError(f"transaction {tx_id} is for channel {channel_name!r}, not {self.channel_name!r}")
        return Transaction(payload, tx_id=tx_id, channel_name=channel_name, transaction_name=name,
                           client=self._client).with_signature(signature)

    def evaluate(self, name: str, args: Args = (), *, transient: Transient | None = None,
                 endorsing_organizations: Sequence[str] | None = None) -> bytes:
        """Run transaction ``name`` on one peer, without ordering it, and return its result.

        Parameters
        ----------
        name
            The transaction function.
        args
            Its arguments (str or bytes).
        transient
            Private inputs, never written to the ledger; without ``endorsing_organizations`` the
            gateway then asks only peers of its own organization.
        endorsing_organizations
            MSP ids whose peers may answer (the gateway picks one).

        Raises
        ------
        GatewayError
            The chaincode refused (its message is in the error), or the gateway could not be reached.
        """
        return self.new_proposal(name, args, transient=transient,
                                 endorsing_organizations=endorsing_organizations).evaluate()

    def submit_async(self, name: str, args: Args = (), *, transient: Transient | None = None,
                     endorsing_organizations: Sequence[str] | None = None) -> SubmittedTransaction:
        """Endorse transaction ``name`` and send it to ordering; return without waiting for the commit.

        The result is available at once; :meth:`SubmittedTransaction.status` waits for the commit.

        Raises
        ------
        EndorseError
            The chaincode refused on the endorsing peers (its message is in the error), or too few
            peers endorsed.
        SubmitError
            No orderer accepted the endorsed transaction.
        """
        proposal = self.new_proposal(name, args, transient=transient,
                                     endorsing_organizations=endorsing_organizations)
        return proposal.endorse().submit()

    def submit(self, name: str, args: Args = (), *, transient: Transient | None = None,
               endorsing_organizations: Sequence[str] | None = None) -> bytes:
        """Endorse, order and commit transaction ``name``; return its result once it is on the ledger.

        Raises
        ------
        EndorseError, SubmitError
            As for :meth:`submit_async`.
        CommitStatusError
            The commit status could not be read in time; the transaction may still commit.
        CommitError
            The transaction was committed as invalid (e.g. ``MVCC_READ_CONFLICT``); it changed nothing.
            A :class:`~fedledger.errors.ReplayedTransactionError` when it was already on the ledger.
        """
        submitted = self.submit_async(name, args, transient=transient,
                                      endorsing_organizations=endorsing_organizations)
        return committed(submitted)


def committed(submitted: SubmittedTransaction) -> bytes:
    """The result of a submitted transaction once it is committed as valid.

    Raises
    ------
    ReplayedTransactionError
        It was on the ledger before it was submitted: the peers marked this copy ``DUPLICATE_TXID``,
        or the status found is the original's, older than the submission.
    CommitError
        It was committed as invalid.
    CommitStatusError
        The status could not be read in time; it may still commit.
    """
    status = submitted.status()
    if status.code == DUPLICATE_TXID:
        raise ReplayedTransactionError(status.tx_id, None, duplicate_block=status.block_number,
                                       height=submitted.height_before or None)
    if not status.successful:
        raise CommitError(status.tx_id, status.code, block_number=status.block_number)
    return submitted.result
