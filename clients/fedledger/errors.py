"""The FedLedger exception tree.

::

    FedLedgerError
    └── CryptoError                    anything the crypto core refuses
        ├── KeyMismatchError           operands belong to different keys or layouts
        ├── EncodingError              values that cannot be quantized into a layout
        ├── CapacityError              a sum past the layout's declared maximum
        ├── MalformedCiphertextError   bytes that do not parse as a packed vector
        ├── DecryptionShareError       a partial decryption whose proof fails (names its holder)
        ├── KeyRecoveryError           escrowed key shares that cannot rebuild the key
        └── VrfError                   a VRF key or proof that does not verify
    ├── PrivacyError                   an invalid privacy parameter
    ├── ArtifactError                  an artifact is missing, malformed or fails its hash
    └── FabricError                    anything on the Fabric side
        ├── CAError                    the Fabric CA refused a request (carries its codes)
        │   └── CAUnreachableError     the CA could not be reached or its TLS did not verify
        └── WalletError                a wallet entry is missing, duplicated or damaged
"""

from __future__ import annotations


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
