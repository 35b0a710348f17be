"""Unit tests of escrow custody: t members rebuild the master key; a bad share is named."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from fedledger.crypto.escrow import escrow_private_key, recover_private_key
from fedledger.crypto.paillier import PrivateKey, PublicKey
from fedledger.errors import CryptoError, KeyRecoveryError

Keys = tuple[PublicKey, PrivateKey]


def test_every_t_subset_rebuilds_the_master_key(keypair: Keys) -> None:
    public_key, private_key = keypair
    record, shares = escrow_private_key(private_key, threshold=3, parties=5)

    for subset in itertools.combinations(shares, 3):
        rebuilt = recover_private_key(public_key, record, subset)

        assert {rebuilt.p, rebuilt.q} == {private_key.p, private_key.q}
        assert rebuilt.raw_decrypt(public_key.raw_encrypt(12345)) == 12345


def test_a_share_not_matching_its_commitment_is_named_and_left_out(keypair: Keys) -> None:
    public_key, private_key = keypair
    record, shares = escrow_private_key(private_key, threshold=2, parties=4)
    forged = dataclasses.replace(shares[2], value=shares[2].value + 1)

    with pytest.raises(KeyRecoveryError, match="member 3: share does not match its ledger commitment"):
        recover_private_key(public_key, record, [shares[0], forged])
    rebuilt = recover_private_key(public_key, record, [forged, shares[0], shares[3]])
    assert rebuilt.public_key == public_key


def test_fewer_than_t_shares_cannot_rebuild(keypair: Keys) -> None:
    public_key, private_key = keypair
    record, shares = escrow_private_key(private_key, threshold=3, parties=3)

    with pytest.raises(KeyRecoveryError, match="2 valid shares, 3 needed"):
        recover_private_key(public_key, record, shares[:2])


def test_an_escrow_of_another_key_is_refused(keypair: Keys, other_keypair: Keys) -> None:
    record, shares = escrow_private_key(keypair[1], threshold=2, parties=3)

    with pytest.raises(KeyRecoveryError, match="different public key"):
        recover_private_key(other_keypair[0], record, shares)
    # Same fingerprint claimed, other key's shares: the result is checked against n.
    foreign_record, foreign_shares = escrow_private_key(other_keypair[1], threshold=2, parties=3)
    relabelled = dataclasses.replace(foreign_record, key_fingerprint=keypair[0].fingerprint)
    with pytest.raises(KeyRecoveryError, match="factor"):
        recover_private_key(keypair[0], relabelled, foreign_shares)


def test_threshold_of_one_is_refused(keypair: Keys) -> None:
    with pytest.raises(CryptoError, match="threshold"):
        escrow_private_key(keypair[1], threshold=1, parties=3)


def test_share_repr_hides_the_value(keypair: Keys) -> None:
    _, shares = escrow_private_key(keypair[1], threshold=2, parties=2)

    assert str(int(shares[0].value)) not in repr(shares[0])
