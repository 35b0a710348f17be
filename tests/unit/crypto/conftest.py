"""Keys shared by the crypto tests: small (fast) keys, generated once per session."""

from __future__ import annotations

import pytest

from fedledger.crypto.paillier import PrivateKey, PublicKey, generate_keypair
from fedledger.crypto.threshold import KeyShare, ThresholdPublicKey, deal_threshold_key

# 512-bit keys: far too small for real use, large enough that packing has several slots.
TEST_KEY_BITS = 512


@pytest.fixture(scope="session")
def keypair() -> tuple[PublicKey, PrivateKey]:
    return generate_keypair(key_bits=TEST_KEY_BITS)


@pytest.fixture(scope="session")
def other_keypair() -> tuple[PublicKey, PrivateKey]:
    return generate_keypair(key_bits=TEST_KEY_BITS)


@pytest.fixture(scope="session")
def threshold_2_of_3() -> tuple[ThresholdPublicKey, list[KeyShare]]:
    return deal_threshold_key(threshold=2, parties=3, key_bits=TEST_KEY_BITS)


@pytest.fixture(scope="session")
def threshold_3_of_5() -> tuple[ThresholdPublicKey, list[KeyShare]]:
    return deal_threshold_key(threshold=3, parties=5, key_bits=TEST_KEY_BITS)
