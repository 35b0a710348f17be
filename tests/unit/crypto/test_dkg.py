"""Unit tests of the dealerless key: N = pq from shares, the biprimality test, no member ever holds a secret."""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpz
from hypothesis import given
from hypothesis import strategies as st

from fedledger.crypto import dkg
from fedledger.crypto._shamir import integer_lagrange_at_zero
from fedledger.crypto.dkg import (
    Committee,
    DealerlessKeyShare,
    DealerlessPublicKey,
    DkgMember,
    DkgParameters,
    Message,
    Step,
    combine_partials,
    partial_decrypt,
)
from fedledger.crypto.packing import Layout
from fedledger.crypto.threshold import KeyShare, ThresholdPublicKey, verify_partial
from fedledger.crypto.vector import aggregate, encrypt_vector
from fedledger.errors import CryptoError, DecryptionShareError, KeyMismatchError

# 256-bit moduli: far too small for use, large enough for every step of the protocol.
KEY_BITS = 256
MPZ = type(mpz(0))


@dataclass
class Run:
    """A committee that generated a modulus and a key, and everything an observer saw on the way."""

    committee: Committee
    public: DealerlessPublicKey
    shares: list[DealerlessKeyShare]
    seen: dict[int, set[int]] = field(default_factory=dict)
    transcript: set[int] = field(default_factory=set)


def integers_in(obj: object) -> set[int]:
    """Every integer reachable from ``obj`` through attributes, containers and dataclass fields."""
    found: set[int] = set()
    stack, visited = [obj], set()
    while stack:
        x = stack.pop()
        if isinstance(x, (bool, str, bytes, float)) or x is None:
            continue
        if isinstance(x, (int, MPZ)):
            found.add(int(x))
            continue
        if id(x) in visited:
            continue
        visited.add(id(x))
        if isinstance(x, dict):
            stack += list(x.keys()) + list(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            stack += list(x)
        elif hasattr(x, "__dict__"):
            stack += list(vars(x).values())
        else:
            raise AssertionError(f"cannot look inside a {type(x).__name__}")
    return found


def run_committee(params: DkgParameters, *, batch_size: int = 16) -> Run:
    seen: dict[int, set[int]] = {i: set() for i in params.members}
    transcript: set[int] = set()

    def observe(step: str, members: Sequence[DkgMember], sent: Sequence[Message]) -> None:
        for member in members:
            seen[member.index] |= integers_in(member)
        for msg in sent:
            transcript.update(int(v) for v in msg.values)

    committee = Committee(params, observe=observe)
    committee.generate_modulus(batch_size=batch_size)
    public, shares = committee.derive_key()
    return Run(committee, public, shares, seen, transcript)


@pytest.fixture(scope="module")
def run_2_of_3() -> Run:
    return run_committee(DkgParameters(key_bits=KEY_BITS, parties=3, threshold=2))


@pytest.fixture(scope="module")
def run_3_of_5() -> Run:
    return run_committee(DkgParameters(key_bits=KEY_BITS, parties=5, threshold=3), batch_size=8)


@pytest.fixture(scope="module")
def run_2_of_4() -> Run:
    # An even committee: the DJN base's sign fix and a 4-member product tree.
    return run_committee(DkgParameters(key_bits=KEY_BITS, parties=4, threshold=2), batch_size=8)


def factors(run: Run) -> tuple[mpz, mpz]:
    members = run.committee.members
    return sum((m.p_share for m in members), mpz(0)), sum((m.q_share for m in members), mpz(0))


def split(value: mpz, parties: int) -> list[mpz]:
    """Additive shares in the protocol's form: member 1's = 3 mod 4, the others' = 0 mod 4."""
    bits = int(value.bit_length()) - 3 - (parties - 1).bit_length()
    others = [4 * mpz(secrets.randbits(bits)) for _ in range(parties - 1)]
    return [value - sum(others)] + others


# -- the modulus -----------------------------------------------------------------------------------


@pytest.mark.parametrize("run_name", ["run_2_of_3", "run_3_of_5", "run_2_of_4"])
def test_the_modulus_is_a_product_of_two_primes_of_the_requested_size(
    run_name: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(run_name)
    p, q = factors(run)
    n = run.public.public_key.n

    assert p * q == n and n.bit_length() == KEY_BITS
    assert gmpy2.is_prime(p) and gmpy2.is_prime(q) and p != q
    assert p % 4 == q % 4 == 3
    assert all(m.modulus == n for m in run.committee.members)


def test_shares_have_the_form_the_biprimality_test_needs(run_2_of_3: Run) -> None:
    first, *others = run_2_of_3.committee.members
    p, q = factors(run_2_of_3)
    n = run_2_of_3.public.public_key.n

    assert first.p_share % 4 == first.q_share % 4 == 3
    assert all(m.p_share % 4 == m.q_share % 4 == 0 and m.p_share >= 0 for m in others)
    assert sum(m.phi_share for m in run_2_of_3.committee.members) == (p - 1) * (q - 1) == n - p - q + 1


def test_sieving_leaves_no_factor_up_to_the_sieve_bound(run_2_of_3: Run) -> None:
    p, q = factors(run_2_of_3)
    params = run_2_of_3.committee.params

    assert params.sieve_bound > 50
    assert gmpy2.gcd(p * q, params.sieve_modulus // 4) == 1


@pytest.mark.parametrize("run_name", ["run_2_of_3", "run_3_of_5", "run_2_of_4"])
def test_no_member_ever_holds_p_q_phi_or_the_decryption_exponent(run_name: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(run_name)
    params = run.committee.params
    p, q = factors(run)
    n = run.public.public_key.n
    phi = (p - 1) * (q - 1)
    lam = phi // gmpy2.gcd(p - 1, q - 1)
    # The test rebuilds D = phi R from threshold key shares: sum Delta lambda_j s_j = Delta^2 D.
    used = list(range(1, params.threshold + 1))
    delta = math.factorial(params.parties)
    big_d = sum(integer_lagrange_at_zero(j, used, params.parties) * run.shares[j - 1].secret for j in used)
    assert big_d % (delta * delta) == 0
    big_d //= delta * delta
    d = phi * gmpy2.invert(phi, n)  # the d of Paillier with g = N + 1: 0 mod phi, 1 mod N
    d_lambda = lam * gmpy2.invert(lam, n)
    assert big_d % phi == 0 and big_d % n == run.public.theta
    secrets_ = {p, q, phi, lam, p + q, p + q - 1, phi % n, d, d_lambda, big_d, delta * big_d, delta * delta * big_d}
    forbidden = {int(s) for s in secrets_}
    for prime in (params.sieve_field, params.key_field):
        forbidden |= {int(-s % prime) for s in secrets_}

    for index, seen in run.seen.items():
        assert seen, f"the observer saw nothing of member {index}"
        assert not seen & forbidden, f"member {index} held a secret value in the clear"
    for member in run.committee.members:
        assert not integers_in(member) & forbidden
    assert not run.transcript & forbidden, "a message carried a secret value in the clear"


def test_round_counts_match_the_documented_schedule(run_2_of_3: Run) -> None:
    stats = run_2_of_3.committee.stats
    params = run_2_of_3.committee.params

    rounds = stats.step_rounds
    assert stats.rounds_per_batch == 5 == params.rounds_per_batch
    # Every batch: share, one reduction, open V, open N, then the first base if any N survives
    # the trial division; a batch with a candidate passing it, 2 more; the key, 3.
    assert rounds["sieve"] == rounds["multiply"] == rounds["open_sieved"] == rounds["open_modulus"] == stats.batches
    assert 1 <= rounds["jacobi"] <= stats.batches and rounds["confirm"] == rounds["open_gcd"] >= 1
    assert rounds["share_key"] == rounds["open_key"] == rounds["reshare_key"] == 1
    assert stats.rounds == sum(rounds.values()) <= 5 * stats.batches + 2 * rounds["confirm"] + 3
    assert stats.moduli == stats.batches * 16 and stats.sieved == 2 * stats.moduli
    assert stats.messages > 0 and stats.bytes_sent > 0 and stats.critical_path_s <= stats.cpu_s


def test_five_members_need_two_degree_reductions_per_batch() -> None:
    params = DkgParameters(key_bits=KEY_BITS, parties=5, threshold=3)

    assert params.reduction_rounds == 2 and params.rounds_per_batch == 6


# -- the biprimality test --------------------------------------------------------------------------


def _prime_3_mod_4(bits: int) -> mpz:
    while True:
        x = mpz(secrets.randbits(bits)) | (mpz(3) << (bits - 2)) | 3
        if gmpy2.is_prime(x):
            return x


def _test(params: DkgParameters, p: mpz, q: mpz) -> tuple[mpz | None, Committee]:
    committee = Committee(params)
    p_shares, q_shares = split(p, params.parties), split(q, params.parties)
    shares = [[(p_shares[j], q_shares[j])] for j in range(params.parties)]
    return committee.test_candidates([p * q], shares), committee


@pytest.fixture(scope="module")
def params_2_of_3() -> DkgParameters:
    return DkgParameters(key_bits=KEY_BITS, parties=3, threshold=2)


def test_a_product_of_two_primes_passes_the_biprimality_test(params_2_of_3: DkgParameters) -> None:
    p, q = _prime_3_mod_4(128), _prime_3_mod_4(128)

    accepted, committee = _test(params_2_of_3, p, q)

    assert accepted == p * q
    assert [m.p_share for m in committee.members] and sum(m.p_share for m in committee.members) == p


@pytest.mark.parametrize("attempt", range(3))
def test_a_prime_times_a_composite_is_rejected(params_2_of_3: DkgParameters, attempt: int) -> None:
    p = _prime_3_mod_4(128)
    q = _prime_3_mod_4(64) * (4 * mpz(secrets.randbits(62)) + 1)  # 3 * 1 = 3 mod 4, composite

    accepted, committee = _test(params_2_of_3, p, q)

    assert accepted is None and all(m.modulus is None for m in committee.members)


def test_a_prime_times_a_prime_power_passes_every_base_but_fails_the_gcd_step(params_2_of_3: DkgParameters) -> None:
    # Boneh-Franklin's exception: q = r^3 and p = 1 mod r^2 make g^(phi/4) = +-1 for every base g
    # with Jacobi symbol 1 (found by brute force on small numbers); gcd(N, p + q - 1) > 1 catches it.
    r = _prime_3_mod_4(42)
    q = r**3
    k = mpz(secrets.randbits(128 - 2 * 42)) | (mpz(1) << (127 - 2 * 42))
    k += (2 - k) % 4
    while not gmpy2.is_prime(1 + k * r * r):
        k += 4
    p = 1 + k * r * r
    assert p % 4 == q % 4 == 3 and gmpy2.gcd(p * q, p + q - 1) > 1

    accepted, committee = _test(params_2_of_3, p, q)

    counters = committee.members[0].counters
    assert accepted is None
    assert counters["jacobi_passed"] == 1 and counters["all_bases_passed"] == 1 and counters["accepted"] == 0


def test_adopted_shares_in_the_wrong_form_are_refused(params_2_of_3: DkgParameters) -> None:
    member = DkgMember(2, params_2_of_3)

    with pytest.raises(CryptoError, match="non-negative and 0 mod 4"):
        member.adopt_candidates([mpz(15)], [mpz(3)], [mpz(5)], coin=b"x")


# -- members refuse what does not fit the protocol ------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"parties": 2, "threshold": 2}, "needs 3..32 members, got 2"),
        ({"parties": 4, "threshold": 3}, r"threshold must be in \[2, 2\] for 4 members"),
        ({"parties": 3, "threshold": 1}, r"threshold must be in \[2, 2\]"),
        ({"parties": 3, "threshold": 2, "key_bits": 255}, "even number >= 256"),
        ({"parties": 3, "threshold": 2, "biprimality_bases": 20}, "at least 40"),
    ],
)
def test_unsound_parameters_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        DkgParameters(**{"key_bits": KEY_BITS, **kwargs})


def test_a_truncated_message_is_refused_naming_its_sender(params_2_of_3: DkgParameters) -> None:
    members = [DkgMember(i, params_2_of_3) for i in params_2_of_3.members]
    sent = [msg for m in members for msg in m.sieve(2)]
    inbox = [msg for msg in sent if msg.recipient in (1, dkg.BROADCAST)]
    inbox = [
        Message(2, 1, Step.SIEVE, msg.values[:-1]) if (msg.sender, msg.step) == (2, Step.SIEVE) else msg
        for msg in inbox
    ]

    with pytest.raises(CryptoError, match="expected 12 values in the sieve message from member 2, got 11"):
        members[0].multiply(inbox)


def test_a_missing_message_is_refused(params_2_of_3: DkgParameters) -> None:
    members = [DkgMember(i, params_2_of_3) for i in params_2_of_3.members]
    sent = [msg for m in members for msg in m.sieve(1)]
    inbox = [msg for msg in sent if msg.recipient in (1, dkg.BROADCAST) and msg.sender != 3]

    with pytest.raises(CryptoError, match=r"no sieve message from members \[3\]"):
        members[0].multiply(inbox)


def test_steps_out_of_order_are_refused(params_2_of_3: DkgParameters) -> None:
    member = DkgMember(1, params_2_of_3)

    with pytest.raises(CryptoError, match="member 1 is in phase 'idle', not opened-sieved"):
        member.open_modulus([])
    with pytest.raises(CryptoError, match="member 1 has no accepted modulus yet"):
        _ = member.p_share


# -- decryption -----------------------------------------------------------------------------------


@pytest.mark.parametrize("run_name", ["run_2_of_3", "run_3_of_5", "run_2_of_4"])
def test_every_threshold_subset_of_members_decrypts(run_name: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(run_name)
    pk = run.public.public_key
    plaintexts = [mpz(0), mpz(1), mpz(secrets.randbelow(int(pk.n)))]
    ciphertexts = [pk.raw_encrypt(m) for m in plaintexts]
    partials = [partial_decrypt(s, ciphertexts) for s in run.shares]

    for subset in itertools.combinations(partials, run.public.threshold):
        assert combine_partials(run.public, subset) == plaintexts


@given(data=st.data())
def test_the_product_of_ciphertexts_decrypts_to_the_sum(run_2_of_3: Run, data: st.DataObject) -> None:
    pk = run_2_of_3.public.public_key
    half = int(pk.n) // 2
    a, b = data.draw(st.integers(0, half - 1)), data.draw(st.integers(0, half - 1))
    c = pk.raw_encrypt(a) * pk.raw_encrypt(b) % pk.nsquare

    partials = [partial_decrypt(s, [c]) for s in run_2_of_3.shares[1:]]

    assert combine_partials(run_2_of_3.public, partials) == [a + b]


def test_fedledger_packed_vectors_decrypt_with_dealerless_shares() -> None:
    public, shares = dkg.generate_dealerless_key(key_bits=512, parties=3, threshold=2, batch_size=32)
    layout = Layout(clip=2.0, max_summands=5, max_weight=100, value_bits=12)
    rng = np.random.default_rng(0)
    updates = [rng.uniform(-2, 2, 45) for _ in range(3)]
    weights = [10, 100, 37]
    total = aggregate([encrypt_vector(public.public_key, u, layout) for u in updates], weights)
    expected = sum(w * u for w, u in zip(weights, updates))

    partials = [partial_decrypt(s, total.ciphertexts) for s in shares[:2]]
    values = dkg.decrypt_vector(public, total, partials)

    assert np.all(np.abs(values - expected) <= layout.error_bound(total.total_weight))


def test_fewer_than_threshold_partials_cannot_decrypt(run_3_of_5: Run) -> None:
    pk = run_3_of_5.public.public_key
    c = pk.raw_encrypt(5)

    with pytest.raises(CryptoError, match="2 partial decryptions given, 3 needed"):
        combine_partials(run_3_of_5.public, [partial_decrypt(s, [c]) for s in run_3_of_5.shares[:2]])
    with pytest.raises(CryptoError, match="member 1 sent more than one"):
        combine_partials(run_3_of_5.public, [partial_decrypt(run_3_of_5.shares[0], [c])] * 3)


def test_partials_under_another_key_do_not_combine(run_2_of_3: Run, run_3_of_5: Run) -> None:
    c = run_2_of_3.public.public_key.raw_encrypt(5)
    foreign = DealerlessKeyShare(2, run_3_of_5.shares[1].secret, run_2_of_3.public)

    with pytest.raises(CryptoError, match="do not combine"):
        combine_partials(run_2_of_3.public, [partial_decrypt(run_2_of_3.shares[0], [c]), partial_decrypt(foreign, [c])])


def test_a_vector_under_another_key_is_refused(run_2_of_3: Run, run_3_of_5: Run) -> None:
    layout = Layout(clip=2.0, max_summands=5, max_weight=100, value_bits=12)
    vector = encrypt_vector(run_3_of_5.public.public_key, np.zeros(3), layout)

    with pytest.raises(KeyMismatchError):
        dkg.decrypt_vector(run_2_of_3.public, vector, [])


@pytest.mark.parametrize("run_name", ["run_2_of_3", "run_2_of_4"])
def test_the_djn_base_has_the_form_a_dealer_gives_it(run_name: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(run_name)
    pk = run.public.public_key
    p, q = factors(run)

    # hs = h^N with h = -(prod x_i)^2: an N-th residue, and a non-square modulo p and q (as -1 is,
    # p and q being 3 mod 4), exactly the form keypair_from_primes gives a dealer's hs.
    assert gmpy2.powmod(pk.hs, (p - 1) * (q - 1), pk.nsquare) == 1
    assert gmpy2.legendre(pk.hs % p, p) == gmpy2.legendre(pk.hs % q, q) == -1


def test_the_shares_do_not_fit_threshold_py_which_needs_safe_primes(run_2_of_3: Run) -> None:
    # Rescaled by u = (Delta theta)^-1 mod N the integer shares have threshold.py's arithmetic
    # (shares of d = 1 mod N, 0 mod phi), but its proofs bound s_i by N^2 (Shoup's shares mod
    # N p' q') and rest on safe primes: the dealerless shares are refused as out of range.
    public = run_2_of_3.public
    pk = public.public_key
    u = gmpy2.invert(public.delta * public.theta, pk.n)
    v = gmpy2.powmod(3, 2, pk.nsquare)
    rescaled = [u * s.secret for s in run_2_of_3.shares]
    tpk = ThresholdPublicKey(pk, 2, 3, v, tuple(gmpy2.powmod(v, public.delta * s, pk.nsquare) for s in rescaled))
    share = KeyShare(1, rescaled[0], tpk)
    layout = Layout(clip=2.0, max_summands=5, max_weight=100, value_bits=12)
    vector = encrypt_vector(pk, np.zeros(2), layout)

    from fedledger.crypto.threshold import partial_decrypt as threshold_partial

    with pytest.raises(DecryptionShareError, match="out of range"):
        verify_partial(tpk, vector, threshold_partial(share, vector))
