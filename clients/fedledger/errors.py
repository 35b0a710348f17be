"""The FedLedger exception tree.

::

    FedLedgerError
    ├── CryptoError                        anything the crypto core refuses
    │   ├── KeyMismatchError               operands belong to different keys or layouts
    │   ├── EncodingError                  values that cannot be quantized into a layout
    │   ├── CapacityError                  a sum past the layout's declared maximum
    │   ├── MalformedCiphertextError       bytes that do not parse as a packed vector
    │   ├── DecryptionShareError           a partial decryption whose proof fails (names its holder)
    │   ├── KeyRecoveryError               escrowed key shares that cannot rebuild the key
    │   └── VrfError                       a VRF key or proof that does not verify
    ├── PrivacyError                       an invalid privacy parameter
    ├── ArtifactError                      an artifact is missing, malformed or fails its hash
    ├── DataError                          a dataset or parameter vector missing, malformed or misshapen
    ├── TaskSpecError                      a task parameter the chaincode's genesis would refuse (names its key)
    │   └── TaskFileError                  a task file unreadable, unparsable, or with a value of the wrong type
    ├── FabricError                        anything on the Fabric side
    │   ├── CAError                        the Fabric CA refused a request (carries its codes)
    │   │   └── CAUnreachableError         the CA could not be reached or its TLS did not verify
    │   ├── WalletError                    a wallet entry is missing, duplicated or damaged
    │   ├── GatewayError                   a Fabric Gateway call failed (gRPC code, per-peer details)
    │   │   ├── EndorseError               the proposal was not endorsed (carries tx_id)
    │   │   ├── SubmitError                the ordering service did not accept it (carries tx_id)
    │   │   ├── CommitStatusError          its commit status could not be read (carries tx_id)
    │   │   └── AccessDeniedError          a peer or orderer refused the identity; says why, where it can
    │   │       ├── EndorseAccessDeniedError         refused at endorsement: also an EndorseError
    │   │       ├── SubmitAccessDeniedError          refused at ordering: also a SubmitError
    │   │       └── CommitStatusAccessDeniedError    refused its status: also a CommitStatusError
    │   ├── CommitError                    ordered, but committed as invalid (tx_id, validation code)
    │   │   └── ReplayedTransactionError   on the ledger before it was submitted: a replay, nothing written
    │   └── KeyIntegrityError              a key or sealed share read from the ledger fails its hash
    └── NetworkError                       bringing the consortium up, inspecting or stopping it
        ├── NetworkConfigError             an invalid consortium file
        ├── NetworkStateError              up when already up, a half-started network, down when not up
        └── NodeError                      a node that did not start or answer (names it and its log)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class FedLedgerError(Exception):
    """Root of every error FedLedger raises on purpose."""


class CryptoError(FedLedgerError):
    """The crypto core refused an input or an operation."""


class KeyMismatchError(CryptoError):
    """Operands were made under different keys or different packing layouts."""


class EncodingError(CryptoError):
    """Values cannot be quantized into the declared layout (out of range, NaN, wrong shape)."""


class CapacityError(CryptoError):
    """A homomorphic sum would pass the summand or weight maximum its layout was sized for."""


class MalformedCiphertextError(CryptoError):
    """Serialized ciphertext bytes are truncated, for another key or layout, or out of range."""


class DecryptionShareError(CryptoError):
    """A committee member's partial decryption failed its proof of correctness."""

    def __init__(self, holder: int, reason: str) -> None:
        super().__init__(f"partial decryption from share holder {holder} is invalid: {reason}")
        self.holder = holder
        self.reason = reason


class KeyRecoveryError(CryptoError):
    """Escrowed shares could not rebuild the master key."""


class VrfError(CryptoError):
    """A VRF public key or proof is malformed or does not verify."""


class PrivacyError(FedLedgerError):
    """A privacy parameter (clip norm, noise, epsilon, delta) is invalid."""


class ArtifactError(FedLedgerError):
    """An artifact is missing, its digest is malformed, or its bytes do not match their hash."""


class DataError(FedLedgerError):
    """A dataset file is missing or malformed, a partition is impossible, or a vector does not fit its model."""


class TaskSpecError(FedLedgerError):
    """A task parameter the chaincode's genesis would refuse; ``key`` is its task-file key (``rounds``)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key} {reason}")
        self.key, self.reason = key, reason


class TaskFileError(TaskSpecError):
    """A task file that cannot be read or parsed, or whose key ``key`` holds a value of the wrong type or range.

    ``key`` is empty when the problem is the file as a whole (missing, a directory, not UTF-8, not a table).
    """

    def __init__(self, path: Path | str, reason: str, *, key: str = "") -> None:
        FedLedgerError.__init__(self, f"task file {path}: {key + ' ' if key else ''}{reason}")
        self.path, self.key, self.reason = Path(path), key, reason


class FabricError(FedLedgerError):
    """Something on the Fabric side (CA, wallet, gateway) failed."""


class CAError(FabricError):
    """The Fabric CA refused a request; ``codes`` are the CA's own error codes."""

    def __init__(self, operation: str, messages: list[str], codes: list[int] | None = None) -> None:
        detail = "; ".join(messages) if messages else "no reason given"
        super().__init__(f"Fabric CA refused {operation}: {detail}")
        self.operation = operation
        self.messages = messages
        self.codes = codes or []


class CAUnreachableError(CAError):
    """The Fabric CA could not be reached, or its TLS certificate did not verify."""

    def __init__(self, url: str, reason: str) -> None:
        FabricError.__init__(self, f"cannot reach the Fabric CA at {url}: {reason}")
        self.operation, self.messages, self.codes = "connect", [reason], []
        self.url = url


class WalletError(FabricError):
    """A wallet entry is missing, already present, or damaged on disk."""


@dataclass(frozen=True)
class ErrorDetail:
    """One peer's or orderer's reason for refusing, as the Fabric Gateway reports it."""

    address: str
    msp_id: str
    message: str

    def __str__(self) -> str:
        return f"{self.address} ({self.msp_id}): {self.message}"


class GatewayError(FabricError):
    """A Fabric Gateway call failed.

    ``code`` is the gRPC status code's name (``"ABORTED"``, ``"UNAVAILABLE"``, ...), ``address`` the
    gateway peer called, and ``details`` the gateway's per-peer reasons; the chaincode's own
    message appears there verbatim, and every detail is part of ``str(err)``.
    """

    def __init__(self, message: str, *, code: str, details: Sequence[ErrorDetail] = (), address: str = "") -> None:
        super().__init__("\n".join([message, *(f"  - {detail}" for detail in details)]))
        self.code = code
        self.details = tuple(details)
        self.address = address


class EndorseError(GatewayError):
    """The proposal was not endorsed (the chaincode refused, or too few peers endorsed); nothing was ordered."""

    def __init__(self, tx_id: str, message: str, *, code: str, details: Sequence[ErrorDetail] = (),
                 address: str = "") -> None:
        super().__init__(message, code=code, details=details, address=address)
        self.tx_id = tx_id


class EndorsementMismatchError(EndorseError):
    """The endorsing peers simulated the proposal on different ledger states (one had committed a
    block the other had not yet): nothing was ordered, and endorsing it again is safe."""


class SubmitError(GatewayError):
    """The endorsed transaction was not accepted by the ordering service."""

    def __init__(self, tx_id: str, message: str, *, code: str, details: Sequence[ErrorDetail] = (),
                 address: str = "") -> None:
        super().__init__(message, code=code, details=details, address=address)
        self.tx_id = tx_id


class CommitStatusError(GatewayError):
    """The commit status of a submitted transaction could not be read; it may still commit."""

    def __init__(self, tx_id: str, message: str, *, code: str, details: Sequence[ErrorDetail] = (),
                 address: str = "") -> None:
        super().__init__(message, code=code, details=details, address=address)
        self.tx_id = tx_id


# What to do about a transaction committed as invalid, by its validation code.
_COMMIT_ADVICE = {
    "MVCC_READ_CONFLICT": "another transaction changed what it read before it committed; submit it again",
    "PHANTOM_READ_CONFLICT": "another transaction changed a range it read before it committed; submit it again",
    "ENDORSEMENT_POLICY_FAILURE": "its endorsements do not satisfy the chaincode's endorsement policy; "
                                  "let the gateway choose the endorsing organizations",
    "DUPLICATE_TXID": "a transaction with the same id is already on the ledger; build a new proposal",
}


class CommitError(FabricError):
    """The transaction was ordered but committed as invalid; ``code`` is its validation code."""

    def __init__(self, tx_id: str, code: str, *, block_number: int | None = None) -> None:
        where = f" in block {block_number}" if block_number is not None else ""
        advice = _COMMIT_ADVICE.get(code, "the ledger is unchanged by it")
        super().__init__(f"transaction {tx_id} failed to commit{where}: {code}; {advice}")
        self.tx_id, self.code, self.block_number = tx_id, code, block_number


class ReplayedTransactionError(CommitError):
    """A submitted envelope whose transaction was already on the ledger: a replay, which wrote nothing.

    ``block_number`` is the block of the original when it is known (the commit status found it),
    else the block of the replayed copy; ``original_block`` and ``duplicate_block`` say which are
    known. ``original_code`` is how the original committed (usually ``VALID``); ``code`` is
    ``DUPLICATE_TXID``, what the peers mark the copy. ``height`` is the channel's height just before
    this submission, when it was known.
    """

    def __init__(self, tx_id: str, original_block: int | None, *, original_code: str = "VALID",
                 duplicate_block: int | None = None, height: int | None = None) -> None:
        if original_block is not None:
            how = "" if original_code == "VALID" else f" (as {original_code})"
            before = f" (the channel was at height {height})" if height is not None else ""
            what = f"was already committed{how} in block {original_block} before this submission{before}"
        else:
            where = f" in block {duplicate_block}" if duplicate_block is not None else ""
            what = f"was already on the ledger when this copy was committed{where}, as DUPLICATE_TXID"
        FabricError.__init__(self, f"transaction {tx_id} {what}: the envelope is a replay; nothing new was "
                                   f"written. To write again, endorse a new proposal")
        self.tx_id, self.code = tx_id, "DUPLICATE_TXID"
        self.block_number = original_block if original_block is not None else duplicate_block
        self.original_block, self.duplicate_block = original_block, duplicate_block
        self.original_code, self.height = original_code, height


class DenialCause(StrEnum):
    """Why a peer or orderer most likely refused an identity (``AccessDeniedError.cause``)."""

    #: The signature does not verify with the certificate's public key: signed with another key.
    KEY_MISMATCH = "key-mismatch"
    #: The certificate's validity period is over.
    EXPIRED = "expired"
    #: The certificate's validity period has not begun (or this machine's clock is wrong).
    NOT_YET_VALID = "not-yet-valid"
    #: The peer could not place the certificate in the MSP it names: not a channel MSP, or not its CA's.
    UNKNOWN_MSP = "unknown-msp"
    #: Nothing checkable here is wrong: revoked, or issued by a CA the channel's MSP does not trust.
    UNEXPLAINED = "unexplained"


class AccessDeniedError(GatewayError):
    """A peer or orderer refused the identity that signed a request ("access denied", "FORBIDDEN").

    Fabric says no more than that to the client. ``cause`` is what a check on this side found
    (:class:`DenialCause`); the message says it in words, with the certificate's subject and MSP.
    ``stage`` is the call refused (``evaluate``, ``endorse``, ``submit``, ``commit_status``, ``events``).
    """

    def __init__(self, message: str, *, cause: DenialCause, stage: str, tx_id: str, msp_id: str, subject: str,
                 code: str, details: Sequence[ErrorDetail] = (), address: str = "") -> None:
        # GatewayError's, not the next class's in a stage subclass's MRO: that one takes tx_id first.
        GatewayError.__init__(self, message, code=code, details=details, address=address)
        self.cause, self.stage, self.tx_id = cause, stage, tx_id
        self.msp_id, self.subject = msp_id, subject


# A refusal is still an error of the stage it stopped: code that handles an EndorseError handles a
# denied endorsement too, and can ask it why.
class EndorseAccessDeniedError(AccessDeniedError, EndorseError):
    """The peers refused the identity at endorsement; nothing was ordered."""


class SubmitAccessDeniedError(AccessDeniedError, SubmitError):
    """The ordering service (or the height read before it) refused the identity; nothing was ordered."""


class CommitStatusAccessDeniedError(AccessDeniedError, CommitStatusError):
    """The peer refused the identity when asked for a commit status."""


class KeyIntegrityError(FabricError):
    """A threshold key or sealed key share read from the ledger does not decode or match its recorded hash."""

    def __init__(self, task_id: str, what: str, reason: str) -> None:
        super().__init__(f"the {what} of task {task_id} read from the ledger {reason}; read it from another "
                         f"organization's peer, and report the peer that answered")
        self.task_id, self.what, self.reason = task_id, what, reason


class NetworkError(FedLedgerError):
    """Bringing the consortium up, inspecting it or tearing it down failed."""


class NetworkConfigError(NetworkError):
    """The consortium file is invalid (names, ports, counts)."""


class NetworkStateError(NetworkError):
    """The network is not in a state that allows the command (already up, half-started, not up)."""


class NodeError(NetworkError):
    """A node failed to start or to answer; names the node and where its log is."""

    def __init__(self, node: str, reason: str, log: str = "") -> None:
        where = f" (log: {log})" if log else ""
        super().__init__(f"{node}: {reason}{where}")
        self.node, self.reason, self.log = node, reason, log
