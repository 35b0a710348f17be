"""FedLedger's Fabric client: identities and signing, the Fabric CA client, the file wallet, and the
Fabric Gateway client (connect, evaluate, submit, commit status, chaincode events)."""

from fedledger.fabric.blocks import (
    Chain,
    ChainReport,
    Check,
    CheckResult,
    LedgerAudit,
    PeerAgreement,
    audit_ledger,
    compare_chains,
    fetch_chain,
    verify_blocks,
    verify_chain,
)
from fedledger.fabric.ca import CAClient, CAInfo, Enrollment, Revocation
from fedledger.fabric.commit import Status, SubmittedTransaction
from fedledger.fabric.contract import Contract
from fedledger.fabric.events import (
    ChaincodeEvent,
    ChaincodeEventStream,
    Checkpointer,
    FileCheckpointer,
    InMemoryCheckpointer,
)
from fedledger.fabric.gateway import Gateway, connect
from fedledger.fabric.identity import Identity, Signer, certificate_fingerprint
from fedledger.fabric.ledger import Ledger
from fedledger.fabric.network import Network
from fedledger.fabric.proposal import Proposal, build_proposal
from fedledger.fabric.transaction import Transaction
from fedledger.fabric.wallet import FileWallet

__all__ = [
    "CAClient",
    "CAInfo",
    "Chain",
    "ChainReport",
    "ChaincodeEvent",
    "ChaincodeEventStream",
    "Check",
    "CheckResult",
    "Checkpointer",
    "Contract",
    "Enrollment",
    "FileCheckpointer",
    "FileWallet",
    "Gateway",
    "Identity",
    "InMemoryCheckpointer",
    "Ledger",
    "LedgerAudit",
    "Network",
    "PeerAgreement",
    "Proposal",
    "Revocation",
    "Signer",
    "Status",
    "SubmittedTransaction",
    "Transaction",
    "audit_ledger",
    "build_proposal",
    "certificate_fingerprint",
    "compare_chains",
    "connect",
    "fetch_chain",
    "verify_blocks",
    "verify_chain",
]
