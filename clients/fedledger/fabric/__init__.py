"""FedLedger's Fabric client: identities and signing, the Fabric CA client, and the file wallet."""

from fedledger.fabric.ca import CAClient, CAInfo, Enrollment, Revocation
from fedledger.fabric.identity import Identity, Signer, certificate_fingerprint
from fedledger.fabric.wallet import FileWallet

__all__ = [
    "CAClient",
    "CAInfo",
    "Enrollment",
    "FileWallet",
    "Identity",
    "Revocation",
    "Signer",
    "certificate_fingerprint",
]
