"""Unit tests of ECVRF-EDWARDS25519-SHA512-TAI: the RFC 9381 vectors and every kind of bad proof or key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.crypto import vrf
from fedledger.crypto.vrf import GROUP_ORDER, VrfKeyPair, proof_to_hash, prove, verify
from fedledger.errors import CryptoError, VrfError

VECTORS_FILE = Path(__file__).resolve().parents[2] / "vectors" / "ecvrf_edwards25519_sha512_tai.json"
RFC_VECTORS: list[dict[str, str]] = json.loads(VECTORS_FILE.read_text())["vectors"]

# The order-2 point (0, -1): adding it to a subgroup point leaves the subgroup.
ORDER_TWO = (2**255 - 20).to_bytes(32, "little")
IDENTITY = b"\x01" + bytes(31)
# y = p + 1 reduces to the identity's y = 1: on the curve, but not the canonical encoding.
NON_CANONICAL_IDENTITY = (2**255 - 19 + 1).to_bytes(32, "little")

secret_keys = st.binary(min_size=32, max_size=32)
alphas = st.binary(max_size=64)


def _bytes(vector: dict[str, str], name: str) -> bytes:
    return bytes.fromhex(vector[name])


def _ids(vector: dict[str, str]) -> str:
    return vector["name"]


@pytest.fixture(scope="module")
def example() -> tuple[bytes, bytes, bytes, bytes]:
    """RFC example 17 (one-byte alpha): public key, alpha, proof, output."""
    vector = RFC_VECTORS[1]
    return _bytes(vector, "pk"), _bytes(vector, "alpha"), _bytes(vector, "pi"), _bytes(vector, "beta")


def _with_torsion(encoding: bytes) -> bytes:
    """The same point plus the order-2 point: still on the curve, no longer in the subgroup."""
    point = vrf._decode(encoding)
    torsion = vrf._decode(ORDER_TWO)
    assert point is not None and torsion is not None
    return vrf._encode(vrf._add(point, torsion))


# RFC 9381 Appendix B.3 vectors


def test_the_vectors_file_holds_the_three_rfc_examples() -> None:
    document = json.loads(VECTORS_FILE.read_text())

    assert document["suite"] == "ECVRF-EDWARDS25519-SHA512-TAI"
    assert [v["name"] for v in RFC_VECTORS] == ["example 16", "example 17", "example 18"]


@pytest.mark.parametrize("vector", RFC_VECTORS, ids=_ids)
def test_the_public_key_derives_from_the_secret_key_as_in_rfc_8032(vector: dict[str, str]) -> None:
    keypair = VrfKeyPair.from_secret_key(_bytes(vector, "sk"))

    assert keypair.public_key == _bytes(vector, "pk")


@pytest.mark.parametrize("vector", RFC_VECTORS, ids=_ids)
def test_hash_to_curve_gives_the_rfc_point_h(vector: dict[str, str]) -> None:
    h = vrf._encode_to_curve(_bytes(vector, "pk"), _bytes(vector, "alpha"))

    assert h.hex() == vector["h"]


@pytest.mark.parametrize("vector", RFC_VECTORS, ids=_ids)
def test_prove_gives_the_rfc_proof(vector: dict[str, str]) -> None:
    pi = prove(_bytes(vector, "sk"), _bytes(vector, "alpha"))

    assert pi.hex() == vector["pi"]


@pytest.mark.parametrize("vector", RFC_VECTORS, ids=_ids)
def test_proof_to_hash_gives_the_rfc_output(vector: dict[str, str]) -> None:
    beta = proof_to_hash(_bytes(vector, "pi"))

    assert beta.hex() == vector["beta"]


@pytest.mark.parametrize("vector", RFC_VECTORS, ids=_ids)
def test_verify_accepts_the_rfc_proof_and_returns_its_output(vector: dict[str, str]) -> None:
    beta = verify(_bytes(vector, "pk"), _bytes(vector, "alpha"), _bytes(vector, "pi"))

    assert beta.hex() == vector["beta"]


# Rejections


def test_a_proof_for_another_alpha_does_not_verify(example: tuple[bytes, bytes, bytes, bytes]) -> None:
    public_key, alpha, pi, _ = example

    with pytest.raises(VrfError, match="proof does not verify"):
        verify(public_key, alpha + b"\x00", pi)


def test_a_proof_under_another_public_key_does_not_verify(example: tuple[bytes, bytes, bytes, bytes]) -> None:
    _, alpha, pi, _ = example
    other_key = _bytes(RFC_VECTORS[0], "pk")

    with pytest.raises(VrfError, match="proof does not verify"):
        verify(other_key, alpha, pi)


@pytest.mark.parametrize(
    ("part", "start", "end"), [("Gamma", 0, 32), ("c", 32, 48), ("s", 48, 80)], ids=["Gamma", "c", "s"]
)
def test_a_flipped_bit_anywhere_in_a_proof_part_is_rejected(
    example: tuple[bytes, bytes, bytes, bytes], part: str, start: int, end: int
) -> None:
    public_key, alpha, pi, _ = example

    for bit in range(start * 8, end * 8):
        forged = bytearray(pi)
        forged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(VrfError):
            verify(public_key, alpha, bytes(forged))


def test_s_at_or_above_the_group_order_is_rejected(example: tuple[bytes, bytes, bytes, bytes]) -> None:
    public_key, alpha, pi, _ = example
    # s + L is the same scalar mod L: the RFC requires rejecting it, or proofs become malleable.
    s = int.from_bytes(pi[48:], "little")
    forged = pi[:48] + (s + GROUP_ORDER).to_bytes(32, "little")

    with pytest.raises(VrfError, match="s is not below the group order"):
        verify(public_key, alpha, forged)
    with pytest.raises(VrfError, match="s is not below the group order"):
        proof_to_hash(forged)


@pytest.mark.parametrize("length", [0, 79, 81, 160])
def test_a_proof_of_the_wrong_length_is_rejected(example: tuple[bytes, bytes, bytes, bytes], length: int) -> None:
    public_key, alpha, pi, _ = example
    forged = (pi * 2)[:length]

    with pytest.raises(VrfError, match=f"proof is {length} bytes, expected 80"):
        verify(public_key, alpha, forged)
    with pytest.raises(VrfError, match=f"proof is {length} bytes, expected 80"):
        proof_to_hash(forged)


@pytest.mark.parametrize("length", [0, 31, 33])
def test_keys_of_the_wrong_length_are_rejected(example: tuple[bytes, bytes, bytes, bytes], length: int) -> None:
    public_key, alpha, pi, _ = example

    with pytest.raises(VrfError, match=f"public key is {length} bytes, expected 32"):
        verify((public_key * 2)[:length], alpha, pi)
    with pytest.raises(VrfError, match=f"secret key is {length} bytes, expected 32"):
        prove(bytes(length), alpha)
    with pytest.raises(VrfError, match=f"secret key is {length} bytes, expected 32"):
        VrfKeyPair.from_secret_key(bytes(length))


@pytest.mark.parametrize("small_order_key", [IDENTITY, ORDER_TWO], ids=["identity", "order 2"])
def test_a_small_order_public_key_is_rejected(
    example: tuple[bytes, bytes, bytes, bytes], small_order_key: bytes
) -> None:
    _, alpha, pi, _ = example

    with pytest.raises(VrfError, match="public key is a small-order point"):
        verify(small_order_key, alpha, pi)


@pytest.mark.parametrize(
    "encoding",
    [NON_CANONICAL_IDENTITY, IDENTITY[:31] + b"\x80", b"\x02" + bytes(31)],
    ids=["y above p", "negative zero x", "not on the curve"],
)
def test_a_public_key_that_is_not_a_canonical_point_encoding_is_rejected(
    example: tuple[bytes, bytes, bytes, bytes], encoding: bytes
) -> None:
    _, alpha, pi, _ = example

    with pytest.raises(VrfError, match="public key is not a canonical encoding of a curve point"):
        verify(encoding, alpha, pi)


def test_a_gamma_that_is_not_a_canonical_point_encoding_is_rejected(
    example: tuple[bytes, bytes, bytes, bytes],
) -> None:
    public_key, alpha, pi, _ = example
    forged = NON_CANONICAL_IDENTITY + pi[32:]

    with pytest.raises(VrfError, match="Gamma is not a canonical encoding of a curve point"):
        verify(public_key, alpha, forged)


def test_a_public_key_outside_the_prime_order_subgroup_is_rejected(
    example: tuple[bytes, bytes, bytes, bytes],
) -> None:
    public_key, alpha, pi, _ = example

    with pytest.raises(VrfError, match="public key is not in the prime-order subgroup"):
        verify(_with_torsion(public_key), alpha, pi)


def test_a_gamma_outside_the_prime_order_subgroup_is_rejected_deliberately(
    example: tuple[bytes, bytes, bytes, bytes],
) -> None:
    public_key, alpha, pi, _ = example
    # RFC 9381 would give this Gamma the same beta (8 * T is the identity); we refuse it outright.
    forged = _with_torsion(pi[:32]) + pi[32:]

    with pytest.raises(VrfError, match="Gamma is not in the prime-order subgroup"):
        verify(public_key, alpha, forged)
    with pytest.raises(VrfError, match="Gamma is not in the prime-order subgroup"):
        proof_to_hash(forged)


def test_an_identity_gamma_is_rejected(example: tuple[bytes, bytes, bytes, bytes]) -> None:
    public_key, alpha, pi, _ = example

    with pytest.raises(VrfError, match="Gamma is a small-order point"):
        verify(public_key, alpha, IDENTITY + pi[32:])


def test_a_zero_challenge_and_zero_s_are_refused_cleanly(example: tuple[bytes, bytes, bytes, bytes]) -> None:
    public_key, alpha, pi, _ = example
    # c = 0 and s = 0 make U and V the identity, which libsodium cannot produce: it must not crash.
    forged = pi[:32] + bytes(48)

    with pytest.raises(VrfError, match="proof does not verify"):
        verify(public_key, alpha, forged)


def test_alpha_that_is_not_bytes_is_rejected(example: tuple[bytes, bytes, bytes, bytes]) -> None:
    public_key, _, pi, _ = example

    with pytest.raises(VrfError, match="alpha must be bytes, got str"):
        verify(public_key, "r", pi)  # type: ignore[arg-type]


def test_vrf_errors_are_crypto_errors() -> None:
    assert issubclass(VrfError, CryptoError)


# Key pairs


def test_a_key_pair_repr_does_not_show_the_secret_key() -> None:
    keypair = VrfKeyPair.from_secret_key(_bytes(RFC_VECTORS[0], "sk"))

    text = repr(keypair) + str(keypair)

    assert RFC_VECTORS[0]["sk"] not in text
    assert repr(keypair.secret_key) not in text
    assert RFC_VECTORS[0]["pk"] in text


def test_a_key_pair_whose_halves_do_not_match_is_refused() -> None:
    with pytest.raises(VrfError, match="public key does not belong to the secret key"):
        VrfKeyPair(_bytes(RFC_VECTORS[0], "sk"), _bytes(RFC_VECTORS[1], "pk"))


def test_generated_key_pairs_are_fresh_and_work() -> None:
    first, second = VrfKeyPair.generate(), VrfKeyPair.generate()

    assert first.secret_key != second.secret_key
    pi = prove(first.secret_key, b"round 1")
    assert verify(first.public_key, b"round 1", pi) == proof_to_hash(pi)


# Invariants


@given(secret_key=secret_keys, alpha=alphas)
def test_every_proof_verifies_to_its_own_output(secret_key: bytes, alpha: bytes) -> None:
    keypair = VrfKeyPair.from_secret_key(secret_key)

    pi = prove(keypair.secret_key, alpha)

    assert len(pi) == 80
    beta = verify(keypair.public_key, alpha, pi)
    assert beta == proof_to_hash(pi)
    assert len(beta) == 64


@given(secret_key=secret_keys, alpha=alphas)
def test_prove_is_deterministic(secret_key: bytes, alpha: bytes) -> None:
    assert prove(secret_key, alpha) == prove(secret_key, alpha)


@given(secret_key=secret_keys, alpha=alphas, other=alphas)
def test_a_proof_verifies_for_no_other_alpha(secret_key: bytes, alpha: bytes, other: bytes) -> None:
    keypair = VrfKeyPair.from_secret_key(secret_key)
    pi = prove(secret_key, alpha)

    if other == alpha:
        assert verify(keypair.public_key, other, pi) == proof_to_hash(pi)
    else:
        with pytest.raises(VrfError, match="proof does not verify"):
            verify(keypair.public_key, other, pi)
