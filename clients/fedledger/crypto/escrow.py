"""Escrow key custody: a master decrypts with the full key; the committee can rebuild it.

The design of 000_b005f3d8904386cc.txt: one master holds the Paillier private key (fast,
single-key CRT decryption), and its secret factor ``p`` is Shamir-shared over the committee,
``t`` of ``n``, so that if the master fails ``t`` members jointly recover the key. Each share's
SHA-256 commitment goes on the ledger; a share that does not match its commitment is named and
left out, and the recovered key is checked against the public modulus before it is returned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from gmpy2 import mpz

from fedledger.crypto._numbers import evaluate_polynomial, random_below
from fedledger.crypto._shamir import interpolate_at_zero
from fedledger.crypto.paillier import PrivateKey, PublicKey
from fedledger.errors import CryptoError, KeyRecoveryError

# The Mersenne prime 2^2203 - 1: a field larger than the factor of any key up to 4096 bits.
FIELD_PRIME = mpz(2) ** 2203 - 1


@dataclass(frozen=True, repr=False)
class EscrowShare:
    """Committee member ``index``'s Shamir share of the master key's factor ``p``."""

    index: int
    value: mpz
    key_fingerprint: bytes

    def __repr__(self) -> str:
        return f"EscrowShare(index={self.index}, digest={self.digest()[:16]})"

    def digest(self) -> str:
        """SHA-256 hex commitment to the share (recorded on the ledger)."""
        h = hashlib.sha256(b"fedledger/escrow-share/v1")
        h.update(self.key_fingerprint + self.index.to_bytes(4, "big"))
        h.update(int(self.value).to_bytes((int(FIELD_PRIME.bit_length()) + 7) // 8, "big"))
        return h.hexdigest()


@dataclass(frozen=True)
class EscrowRecord:
    """The public side of an escrow: threshold, party count and one commitment per member."""

    key_fingerprint: bytes
    threshold: int
    parties: int
    commitments: tuple[str, ...]


def escrow_private_key(
    private_key: PrivateKey, *, threshold: int, parties: int
) -> tuple[EscrowRecord, list[EscrowShare]]:
    """Shamir-share ``private_key`` over ``parties`` members so any ``threshold`` rebuild it."""
    if not 2 <= threshold <= parties:
        # With t = 1 a share would be the factor itself.
        raise CryptoError(f"threshold must be in [2, parties], got {threshold} of {parties}")
    fingerprint = private_key.public_key.fingerprint
    coefficients = [private_key.p] + [random_below(FIELD_PRIME) for _ in range(threshold - 1)]
    shares = [
        EscrowShare(i, evaluate_polynomial(coefficients, i, FIELD_PRIME), fingerprint)
        for i in range(1, parties + 1)
    ]
    record = EscrowRecord(fingerprint, threshold, parties, tuple(s.digest() for s in shares))
    return record, shares


def recover_private_key(
    public_key: PublicKey, record: EscrowRecord, shares: Sequence[EscrowShare]
) -> PrivateKey:
    """Rebuild the master key from at least ``threshold`` shares that match their commitments.

    Raises
    ------
    KeyRecoveryError
        Naming every share that failed its commitment, when fewer than ``threshold`` good shares
        remain; or when the shares do not rebuild a factor of ``n`` (an escrow of another key).
    """
    if record.key_fingerprint != public_key.fingerprint:
        raise KeyRecoveryError("the escrow record belongs to a different public key")
    good: dict[int, mpz] = {}
    bad: list[str] = []
    for share in shares:
        if not 1 <= share.index <= record.parties:
            bad.append(f"member {share.index}: no such member (1..{record.parties})")
        elif share.digest() != record.commitments[share.index - 1]:
            bad.append(f"member {share.index}: share does not match its ledger commitment")
        else:
            good[share.index] = share.value
    if len(good) < record.threshold:
        detail = "; ".join(bad) if bad else "no invalid shares"
        raise KeyRecoveryError(f"{len(good)} valid shares, {record.threshold} needed ({detail})")
    p = interpolate_at_zero({i: good[i] for i in sorted(good)[: record.threshold]}, FIELD_PRIME)
    n = public_key.n
    if not 1 < p < n or n % p:
        raise KeyRecoveryError("the shares do not rebuild a factor of this key's modulus")
    return PrivateKey(public_key=public_key, p=p, q=n // p)
