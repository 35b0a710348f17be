"""Sealed boxes (libsodium, X25519 + XSalsa20-Poly1305): how the dealer hands a member its key share.

Each committee member holds an X25519 key pair in its own home and records the public half on
the ledger. The dealer seals a share to that public key; only the holder of the private half can
open it, so the sealed share may travel through anyone, and sit on the public ledger, without
revealing anything. A sealed box is anonymous: who dealt it is proved by the Fabric transaction
that recorded it, not by the box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from fedledger.errors import CryptoError

_KEY_HEX = re.compile(r"^[0-9a-f]{64}$")


class SealingError(CryptoError):
    """A sealed box that does not open with this key, or a malformed sealing key."""


def _public(public_key_hex: str) -> PublicKey:
    if not _KEY_HEX.match(public_key_hex):
        raise SealingError(f"{public_key_hex[:20]!r}... is not an X25519 public key (64 lower-case hex digits)")
    return PublicKey(bytes.fromhex(public_key_hex))


@dataclass(frozen=True, repr=False)
class SealingKey:
    """A party's X25519 key pair; ``public_hex`` goes on the ledger, the rest stays in its home."""

    private: bytes

    def __post_init__(self) -> None:
        if len(self.private) != 32:
            raise SealingError(f"an X25519 private key is 32 bytes, not {len(self.private)}")

    def __repr__(self) -> str:
        return f"SealingKey(public={self.public_hex[:16]}...)"

    @classmethod
    def generate(cls) -> SealingKey:
        """A fresh key pair from the OS CSPRNG (libsodium's randombytes)."""
        return cls(bytes(PrivateKey.generate()))

    @property
    def public_hex(self) -> str:
        return bytes(PrivateKey(self.private).public_key).hex()

    def open(self, sealed: bytes) -> bytes:
        """Open a box sealed to this key; raises :class:`SealingError` if it was sealed to another."""
        try:
            return bytes(SealedBox(PrivateKey(self.private)).decrypt(sealed))
        except NaclCryptoError:
            raise SealingError("the sealed box does not open with this key: it was sealed to another key "
                               "or altered") from None


def seal(public_key_hex: str, data: bytes) -> bytes:
    """Seal ``data`` so that only the holder of ``public_key_hex``'s private key can open it."""
    return bytes(SealedBox(_public(public_key_hex)).encrypt(data))
