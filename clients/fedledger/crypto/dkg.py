"""Dealerless threshold Paillier: the committee generates ``N = pq`` and its key shares, no dealer.

For a semi-honest committee of ``n >= 3`` members with an honest majority: every member follows
the protocol, and no ``threshold - 1`` of them together learn more about ``p``, ``q``, ``phi(N)``
or the decryption exponent than ``N``, the biprimality test's published values and the bounds on
``p`` and ``q`` below give (every masked opening hides its value up to ``2**-128``). Nobody,
dealer or member, ever holds ``p``, ``q``, ``phi(N)`` or ``d``.
Each member is a :class:`DkgMember` object holding only its own state; the messages between them
are explicit :class:`Message` values, one method call per member per round, passed by an
in-memory :class:`Committee` that also counts rounds and bytes.

**Modulus** (Boneh-Franklin 2001, with Malkin-Wu-Boneh's distributed sieving), per batch of
``B`` candidate pairs, with BGW arithmetic on degree ``t = threshold - 1`` Shamir shares over a
public prime field larger than every opened value (``2t < n`` so products of two sharings open):

1. *Sieving.* Each member picks, per candidate, a unit ``a_i`` modulo
   ``M = 4 * 3 * 5 * ... * B1`` (the largest such product below ``2**(l-8)``, ``l = key_bits/2``;
   ``a_1 = 3 mod 4``, the others ``1 mod 4``). The product ``a = prod a_i mod M`` is a uniform
   unit, so ``p = a mod M`` has no prime factor up to ``B1``: the multiplicative sharing is turned
   into an additive one by computing ``A = prod a_i`` over the integers (a BGW product tree, one
   degree reduction per level but the last) and opening ``V = A + sum c_i`` with masks ``c_i``
   that are multiples of 4 and ``2**128`` times larger than ``A``. Member ``i``'s share of ``p`` is
   ``(-c_i mod M) + M r_i`` (member 1 adds the public ``(V mod M) + M + O``), so
   ``p = a mod M``, ``p = 3 mod 4`` and the other members' shares are ``0 mod 4``, as the
   biprimality test requires. ``O`` is a public multiple of ``M`` near ``3 * 2**(l-2)`` and the
   ``r_i`` are small enough that ``3 * 2**(l-2) - M < p < 2**l``: ``N`` has exactly ``key_bits``
   bits. (As with Boneh-Franklin's integer shares, ``t`` colluding members can narrow ``p`` to
   ``(n - t) / n`` of that interval from their own shares: at most one bit for ``t < n/2``.)
2. *Product.* Everyone shares its shares of ``p`` and ``q`` (already in step 1); the degree-``2t``
   shares of ``p * q`` are opened: ``N``. Pairs never share a factor candidate: opening ``p q``
   and ``p q'`` would reveal ``p = gcd``.
3. *Trial division* of the public ``N`` by the primes in ``(B1, trial_division_bound]``.
4. *Biprimality* (Boneh-Franklin): for a public random ``g`` with Jacobi symbol ``(g/N) = 1``,
   member 1 publishes ``Q_1 = g^((N - p_1 - q_1 + 1)/4)`` and the others ``Q_i = g^((p_i + q_i)/4)``
   (all mod ``N``); ``N`` passes if ``Q_1 = +-prod Q_i``. One base for every survivor of the trial
   division, then ``biprimality_bases - 1`` more for those that pass, then the gcd step: open
   ``r (p + q - 1) mod N`` (BGW with a statistical mask) and require ``gcd(., N) = 1``.
   Boneh-Franklin show that when ``p = q = 3 mod 4``, ``gcd(N, p + q - 1) = 1`` and ``N`` is not
   the product of two distinct primes, at least half of the bases ``g`` fail. A non-biprime
   therefore survives ``biprimality_bases`` (default 64) bases with probability at most
   ``2**-64``; over at most ``2**24`` tested candidates (a 2048-bit key tests about ``2**11``)
   the chance of accepting any non-biprime is below ``2**-40``. For the accepted ``N`` each base
   reveals the sign ``g^(phi/4) = (g/p)``, whether the public random ``g`` is a square modulo
   ``N``; the published ``Q_i`` are the test's transcript, as in Boneh-Franklin.

A batch takes ``3 + ceil(log2 n)`` rounds (5 for 3 members): share, ``ceil(log2 n) - 1`` degree
reductions, open ``V``, open ``N``, first biprimality base (skipped if no ``N`` survives the trial
division); a batch whose candidate passes that base takes two more (the other bases with the gcd
shares, then the gcd opening).

**Key** (Nishide-Sakurai 2010's shape, ``d`` built from ``phi`` and a public ``theta``), 3 rounds:
members share ``p_i + q_i``, a random ``R_i < N`` and masks; they open ``theta = phi R mod N``
(uniform, so it hides ``phi``; ``gcd(theta, N) = 1`` repeats the gcd step) and, masked,
``W = phi R + sum rho_i``, which turns ``D = phi R`` into additive integer shares
``delta_1 = W - rho_1``, ``delta_i = -rho_i``. Each member shares ``Delta * delta_i`` with an
integer polynomial of degree ``t`` (``Delta = n!``): member ``j``'s key share is the sum ``s_j``
of what it receives. ``D = 0 mod phi`` and ``D = theta mod N``, so ``d = theta^-1 D`` is the
decryption exponent (``d = 0 mod phi``, ``d = 1 mod N``); ``theta^-1`` is applied once, publicly,
when partials are combined: ``c^(Delta^2 D) = 1 + m Delta^2 theta N (mod N^2)``.
The DJN base is joint too: member ``i`` publishes ``h_i = (-x_i^2)^N mod N^2`` and
``h_s = (-1)^(n+1) prod h_i = (-(prod x_i)^2)^N``, so no member knows the root ``h``.

Not covered: malicious members (no commitments, no proofs of correct shares or partials, no
robustness: a member who deviates can bias or break the key, or learn more); safe primes, so these
shares do not fit :mod:`fedledger.crypto.threshold` (Shoup's sharing modulo ``N p' q'`` and its
proofs of correct decryption need ``N = (2p'+1)(2q'+1)``); and any network transport.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

import gmpy2
import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from fedledger.crypto._numbers import random_below, random_unit
from fedledger.crypto._shamir import (
    field_prime,
    integer_coefficient_bound,
    integer_lagrange_at_zero,
    lagrange_at_zero,
    share,
    share_integer,
)
from fedledger.crypto.paillier import MIN_TEST_KEY_BITS, PublicKey
from fedledger.crypto.vector import EncryptedVector, decode_plaintexts
from fedledger.errors import CryptoError, KeyMismatchError

# Statistical hiding of every masked opening and of the integer sharing: 2^-128, as threshold.py.
STATISTICAL_BITS = 128
# The sieving modulus M stays below 2^(l - 8): the random high part of p keeps about 6 bits.
_SIEVE_GAP_BITS = 8
DEFAULT_BIPRIMALITY_BASES = 64
# 40 bases is the least the error bound in the module docstring is stated for.
MIN_BIPRIMALITY_BASES = 40
DEFAULT_TRIAL_DIVISION_BOUND = 1 << 16
DEFAULT_BATCH_SIZE = 128
MAX_PARTIES = 32
# Addressed to every member (the sender included) rather than to one.
BROADCAST = 0


class Step(StrEnum):
    """What a message carries: one tag per kind of message in the protocol."""

    SIEVE = "sieve"                    # private: shares of a_i, c_i and the share of p or q
    COIN = "coin"                      # broadcast: a random seed; the hash of all picks the bases
    REDUCE = "reduce"                  # private: reshared local products (BGW degree reduction)
    OPEN_SIEVED = "open-sieved"        # broadcast: shares of V = prod a_i + sum c_i
    OPEN_MODULUS = "open-modulus"      # broadcast: shares of N = p q
    JACOBI = "jacobi"                  # broadcast: Q_i for the first base
    CONFIRM = "confirm"                # broadcast: Q_i for the other bases
    GCD_SHARES = "gcd-shares"          # private: shares of r_i, the mask and p_i + q_i
    OPEN_GCD = "open-gcd"              # broadcast: shares of r (p + q - 1) + N S
    KEY_SHARES = "key-shares"          # private: shares of p_i + q_i, R_i and two masks
    DJN_BASE = "djn-base"              # broadcast: h_i = (-x_i^2)^N mod N^2
    OPEN_KEY = "open-key"              # broadcast: shares of phi R + N S and phi R + sum rho
    KEY_RESHARE = "key-reshare"        # private: an integer share of Delta * delta_i


@dataclass(frozen=True)
class Message:
    """One message of the protocol: ``values`` from member ``sender`` to ``recipient`` (0 = all)."""

    sender: int
    recipient: int
    step: Step
    values: tuple[mpz, ...]

    @property
    def payload_bytes(self) -> int:
        """Bytes of the values in a minimal big-endian encoding (no framing)."""
        return sum((int(abs(v)).bit_length() + 8) // 8 for v in self.values)


@lru_cache(maxsize=8)
def _odd_primes_up_to(bound: int) -> tuple[int, ...]:
    sieve = bytearray([1]) * (bound + 1)
    sieve[0:2] = b"\x00\x00"
    for k in range(2, math.isqrt(bound) + 1):
        if sieve[k]:
            sieve[k * k :: k] = bytearray(len(range(k * k, bound + 1, k)))
    return tuple(k for k in range(3, bound + 1) if sieve[k])


@lru_cache(maxsize=8)
def _product_of_primes(low: int, high: int) -> mpz:
    """The product of the primes in ``(low, high]``: one gcd with it is the trial division of N."""
    product = mpz(1)
    for p in _odd_primes_up_to(high):
        if p > low:
            product *= p
    return product


@dataclass(frozen=True)
class DkgParameters:
    """The public parameters every member agrees on before the protocol starts.

    Parameters
    ----------
    key_bits
        Bits of ``N`` (each factor has ``key_bits / 2``): 2048 for use, 256..1023 only for tests.
    parties
        Committee size ``n``, 3..32.
    threshold
        Members needed to decrypt: ``threshold - 1`` colluding members learn nothing, and
        ``2 * (threshold - 1) < parties`` (an honest majority, for BGW multiplication).
    biprimality_bases
        Bases of the Boneh-Franklin test for an accepted ``N``: error ``2**-bases`` per candidate.
    trial_division_bound
        Public trial division of each ``N`` by the primes up to this bound (those up to the sieve
        bound are excluded by construction).
    """

    key_bits: int
    parties: int
    threshold: int
    biprimality_bases: int = DEFAULT_BIPRIMALITY_BASES
    trial_division_bound: int = DEFAULT_TRIAL_DIVISION_BOUND
    degree: int = field(init=False)
    delta: int = field(init=False, repr=False)
    sieve_modulus: mpz = field(init=False, repr=False)
    sieve_bound: int = field(init=False)
    offset: mpz = field(init=False, repr=False)
    high_range: mpz = field(init=False, repr=False)
    mask_bound: mpz = field(init=False, repr=False)
    gcd_mask_bound: mpz = field(init=False, repr=False)
    theta_mask_bound: mpz = field(init=False, repr=False)
    rho_bound: mpz = field(init=False, repr=False)
    sieve_field: mpz = field(init=False, repr=False)
    key_field: mpz = field(init=False, repr=False)
    coefficient_bound: mpz = field(init=False, repr=False)
    reduction_rounds: int = field(init=False)
    trial_divisor: mpz = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n, kb = self.parties, self.key_bits
        if not 3 <= n <= MAX_PARTIES:
            raise CryptoError(f"a dealerless key needs 3..{MAX_PARTIES} members, got {n}")
        if not (2 <= self.threshold and 2 * (self.threshold - 1) < n):
            raise CryptoError(
                f"threshold must be in [2, {(n + 1) // 2}] for {n} members (an honest majority "
                f"for BGW multiplication), got {self.threshold}"
            )
        if kb < MIN_TEST_KEY_BITS or kb % 2:
            raise CryptoError(f"key_bits must be an even number >= {MIN_TEST_KEY_BITS}, got {kb}")
        if self.biprimality_bases < MIN_BIPRIMALITY_BASES:
            raise CryptoError(
                f"biprimality_bases must be at least {MIN_BIPRIMALITY_BASES} (error 2^-bases), "
                f"got {self.biprimality_bases}"
            )
        l_bits = kb // 2
        kappa = mpz(1) << STATISTICAL_BITS
        sieve_modulus, sieve_bound = mpz(4), 2
        limit = mpz(1) << (l_bits - _SIEVE_GAP_BITS)
        for p in _odd_primes_up_to(4 * l_bits):
            if sieve_modulus * p > limit:
                break
            sieve_modulus *= p
            sieve_bound = p
        quarter = mpz(1) << (l_bits - 2)
        high_range = (quarter - (n + 1) * sieve_modulus) // (n * sieve_modulus) + 1
        n_max = mpz(1) << kb
        gcd_mask_bound = kappa * n * (mpz(1) << (l_bits + 1))
        theta_mask_bound = kappa * n * n_max
        rho_bound = kappa * n * n_max * n_max
        mask_bound = kappa * sieve_modulus**n
        # Largest values ever opened: V, N, r (p + q - 1) + N S (modulus), phi R + masks (key).
        sieve_max = max(
            sieve_modulus**n + n * mask_bound,
            n_max,
            n * n_max * (mpz(1) << (l_bits + 1)) + n_max * n * gcd_mask_bound,
        )
        key_max = n * n_max * n_max + max(n_max * n * theta_mask_bound, n * rho_bound)
        levels, m = 0, n
        while m > 2:
            m, levels = m // 2 + m % 2, levels + 1
        values = {
            "degree": self.threshold - 1,
            "delta": math.factorial(n),
            "sieve_modulus": sieve_modulus,
            "sieve_bound": sieve_bound,
            "offset": sieve_modulus * ((3 * quarter) // sieve_modulus),
            "high_range": high_range,
            "mask_bound": mask_bound,
            "gcd_mask_bound": gcd_mask_bound,
            "theta_mask_bound": theta_mask_bound,
            "rho_bound": rho_bound,
            "sieve_field": field_prime(int(sieve_max.bit_length()) + 1),
            "key_field": field_prime(int(key_max.bit_length()) + 1),
            "coefficient_bound": integer_coefficient_bound(key_max, parties=n, statistical_bits=STATISTICAL_BITS),
            "reduction_rounds": levels,
            "trial_divisor": _product_of_primes(sieve_bound, max(sieve_bound, self.trial_division_bound)),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def factor_bits(self) -> int:
        """Bits of each factor ``p`` and ``q``."""
        return self.key_bits // 2

    @property
    def rounds_per_batch(self) -> int:
        """Message rounds of a batch whose candidates all fail the first biprimality base."""
        return 4 + self.reduction_rounds

    @property
    def members(self) -> range:
        """Member numbers ``1..parties``."""
        return range(1, self.parties + 1)


@dataclass(frozen=True)
class DealerlessPublicKey:
    """The public side of a dealerless key: the Paillier key and ``theta = phi R mod N``."""

    public_key: PublicKey
    threshold: int
    parties: int
    theta: mpz

    def __post_init__(self) -> None:
        if not 2 <= self.threshold <= self.parties:
            raise CryptoError(f"threshold {self.threshold} of {self.parties} is inconsistent")
        if gmpy2.gcd(self.theta, self.public_key.n) != 1:
            raise CryptoError("theta must be a unit modulo n")

    @property
    def delta(self) -> int:
        """``parties!``: it makes the Lagrange coefficients of the integer sharing integral."""
        return math.factorial(self.parties)


@dataclass(frozen=True, repr=False)
class DealerlessKeyShare:
    """Member ``index``'s integer share ``s_j`` of ``Delta * D`` (semi-honest: no verification key)."""

    index: int
    secret: mpz
    public: DealerlessPublicKey

    def __repr__(self) -> str:
        return f"DealerlessKeyShare(index={self.index}, of={self.public.parties})"


@dataclass(frozen=True)
class DealerlessPartial:
    """Member ``index``'s partial decryptions ``c^(s_j) mod N^2``, one per ciphertext."""

    index: int
    values: tuple[mpz, ...]


@dataclass
class _Batch:
    """A member's private state for one batch of candidates (replaced by every batch)."""

    pairs: int
    coin_seed: bytes
    own_x: list[mpz] = field(default_factory=list)
    factors: list[list[mpz]] = field(default_factory=list)
    mask_sum: list[mpz] = field(default_factory=list)
    x_sum: list[mpz] = field(default_factory=list)
    coin: bytes = b""
    p_shares: list[mpz] = field(default_factory=list)
    q_shares: list[mpz] = field(default_factory=list)
    moduli: list[mpz] = field(default_factory=list)
    live: list[int] = field(default_factory=list)
    gcd_r: dict[int, mpz] = field(default_factory=dict)
    gcd_mask: dict[int, mpz] = field(default_factory=dict)
    gcd_sum: dict[int, mpz] = field(default_factory=dict)


class DkgMember:
    """One committee member: its own secrets, its view of the public values, one method per round.

    Each round method takes the messages addressed to this member in the previous round (its
    inbox) and returns the messages it sends in this one. The member never sees another member's
    object; its phase guards the order of calls.
    """

    def __init__(self, index: int, params: DkgParameters) -> None:
        if index not in params.members:
            raise CryptoError(f"member number must be in 1..{params.parties}, got {index}")
        self.index = index
        self.params = params
        self.counters: Counter[str] = Counter()
        self._phase = "idle"
        self._batch: _Batch | None = None
        self._modulus: mpz | None = None
        self._p_share: mpz | None = None
        self._q_share: mpz | None = None
        self._rho: mpz | None = None
        self._key_sums: tuple[mpz, mpz, mpz, mpz] | None = None
        self._djn_base: mpz | None = None
        self._theta: mpz | None = None
        self.key_share: DealerlessKeyShare | None = None

    def __repr__(self) -> str:
        return f"DkgMember(index={self.index}, phase={self._phase!r})"

    # -- public results -------------------------------------------------------------------------

    @property
    def modulus(self) -> mpz | None:
        """The accepted modulus ``N``, once the biprimality test has passed."""
        return self._modulus

    @property
    def p_share(self) -> mpz:
        """This member's additive integer share of ``p``."""
        return self._require(self._p_share)

    @property
    def q_share(self) -> mpz:
        """This member's additive integer share of ``q``."""
        return self._require(self._q_share)

    @property
    def phi_share(self) -> mpz:
        """This member's additive share of ``phi(N) = N - p - q + 1`` (member 1 holds ``N + 1``)."""
        own = -(self.p_share + self.q_share)
        return own + self._require(self._modulus) + 1 if self.index == 1 else own

    def _require(self, value: mpz | None, what: str = "accepted modulus") -> mpz:
        if value is None:
            raise CryptoError(f"member {self.index} has no {what} yet")
        return value

    # -- plumbing ------------------------------------------------------------------------------

    def _expect(self, *phases: str) -> None:
        if self._phase not in phases:
            raise CryptoError(f"member {self.index} is in phase {self._phase!r}, not {' or '.join(phases)}")

    def _live_batch(self) -> _Batch:
        if self._batch is None:
            raise CryptoError(f"member {self.index} has no batch of candidates")
        return self._batch

    def _gather(self, inbox: Sequence[Message], lengths: Mapping[Step, int]) -> dict[Step, dict[int, tuple[mpz, ...]]]:
        """Check the inbox holds exactly one message of each step from each member, of the right length."""
        got: dict[Step, dict[int, tuple[mpz, ...]]] = {step: {} for step in lengths}
        for msg in inbox:
            if msg.step not in lengths:
                raise CryptoError(f"member {self.index} got an unexpected {msg.step} message from member {msg.sender}")
            if msg.recipient not in (self.index, BROADCAST) or msg.sender not in self.params.members:
                raise CryptoError(f"member {self.index} got a {msg.step} message from {msg.sender} to {msg.recipient}")
            if msg.sender in got[msg.step]:
                raise CryptoError(f"member {self.index} got two {msg.step} messages from member {msg.sender}")
            if len(msg.values) != lengths[msg.step]:
                raise CryptoError(
                    f"member {self.index} expected {lengths[msg.step]} values in the {msg.step} message "
                    f"from member {msg.sender}, got {len(msg.values)}"
                )
            got[msg.step][msg.sender] = msg.values
        for step, by_sender in got.items():
            missing = [i for i in self.params.members if i not in by_sender]
            if missing:
                raise CryptoError(f"member {self.index} has no {step} message from members {missing}")
        return got

    def _private(self, step: Step, shares_by_value: Sequence[Sequence[mpz]]) -> list[Message]:
        """One message per member ``j`` carrying the ``j``-th share of every value, in order."""
        return [
            Message(self.index, j, step, tuple(shares[j - 1] for shares in shares_by_value))
            for j in self.params.members
        ]

    def _broadcast(self, step: Step, values: Iterable[mpz]) -> Message:
        return Message(self.index, BROADCAST, step, tuple(values))

    def _open(self, shares_by_sender: Mapping[int, tuple[mpz, ...]], prime: mpz) -> list[mpz]:
        """Interpolate every opened value (degree <= 2t < n, so all n shares determine it)."""
        points = tuple(sorted(shares_by_sender))
        lambdas = lagrange_at_zero(points, prime)
        count = len(shares_by_sender[points[0]])
        return [
            sum((lam * shares_by_sender[x][k] for lam, x in zip(lambdas, points)), mpz(0)) % prime
            for k in range(count)
        ]

    def _sample_unit(self) -> mpz:
        """A uniform unit modulo M, 3 mod 4 for member 1 and 1 mod 4 for the others."""
        m_odd = self.params.sieve_modulus // 4
        residue = 3 if self.index == 1 else 1
        while True:
            a = 4 * random_below(m_odd) + residue
            if gmpy2.gcd(a, m_odd) == 1:
                return a

    # -- modulus generation ----------------------------------------------------------------------

    def sieve(self, pairs: int) -> list[Message]:
        """Round 1: share ``a_i``, the mask ``c_i`` and this member's share of each ``p`` and ``q``.

        Candidates ``0..pairs-1`` are the ``p``s and ``pairs..2*pairs-1`` the ``q``s of the pairs.
        """
        self._expect("idle")
        if pairs < 1:
            raise CryptoError(f"a batch needs at least one candidate pair, got {pairs}")
        prm = self.params
        batch = _Batch(pairs=pairs, coin_seed=secrets.token_bytes(32))
        values: list[list[mpz]] = []
        m = prm.sieve_modulus
        for _ in range(2 * pairs):
            a = self._sample_unit()
            c = 4 * random_below(prm.mask_bound // 4)
            r = random_below(prm.high_range)
            # Member 1's -(c mod M) becomes (V - c_1) mod M + M once V is open (see open_modulus).
            x = -(c % m) + m * r if self.index == 1 else (-c) % m + m * r
            batch.own_x.append(x)
            for value in (a, c, x):
                values.append(share(value, degree=prm.degree, parties=prm.parties, prime=prm.sieve_field))
        self._batch = batch
        self._phase = "sieved"
        self.counters["sieved"] += 2 * pairs
        coin = self._broadcast(Step.COIN, [mpz(int.from_bytes(batch.coin_seed, "big"))])
        return self._private(Step.SIEVE, values) + [coin]

    def multiply(self, inbox: Sequence[Message]) -> list[Message]:
        """One level of the BGW product tree of the ``a_i``: multiply pairs, reshare (degree reduction)."""
        self._expect("sieved", "reducing")
        batch, prm = self._live_batch(), self.params
        prime = prm.sieve_field
        count = 2 * batch.pairs
        if self._phase == "sieved":
            got = self._gather(inbox, {Step.SIEVE: 3 * count, Step.COIN: 1})
            sieve = got[Step.SIEVE]
            batch.factors = [[sieve[i][3 * k] for i in prm.members] for k in range(count)]
            batch.mask_sum = [sum((sieve[i][3 * k + 1] for i in prm.members), mpz(0)) % prime for k in range(count)]
            batch.x_sum = [sum((sieve[i][3 * k + 2] for i in prm.members), mpz(0)) % prime for k in range(count)]
            seeds = b"".join(int(got[Step.COIN][i][0]).to_bytes(32, "big") for i in prm.members)
            batch.coin = hashlib.sha256(b"fedledger/dkg-coin/v1" + seeds).digest()
        else:
            self._reduce(inbox)
        values = []
        for factors in batch.factors:
            for j in range(0, len(factors) - 1, 2):
                product = factors[j] * factors[j + 1] % prime
                values.append(share(product, degree=prm.degree, parties=prm.parties, prime=prime))
        self._phase = "reducing"
        return self._private(Step.REDUCE, values)

    def _reduce(self, inbox: Sequence[Message]) -> None:
        """Finish a level: each product's degree-t share is the Lagrange sum of its reshared shares."""
        batch, prm = self._live_batch(), self.params
        prime = prm.sieve_field
        width = len(batch.factors[0]) // 2
        got = self._gather(inbox, {Step.REDUCE: width * len(batch.factors)})[Step.REDUCE]
        lambdas = lagrange_at_zero(tuple(prm.members), prime)
        for k, factors in enumerate(batch.factors):
            reduced = [
                sum((lam * got[i][k * width + j] for lam, i in zip(lambdas, prm.members)), mpz(0)) % prime
                for j in range(width)
            ]
            batch.factors[k] = reduced + ([factors[-1]] if len(factors) % 2 else [])

    def open_sieved(self, inbox: Sequence[Message]) -> list[Message]:
        """Finish the product tree; broadcast the degree-2t shares of ``V = prod a_i + sum c_i``."""
        self._expect("reducing")
        self._reduce(inbox)
        batch, prime = self._live_batch(), self.params.sieve_field
        if any(len(f) != 2 for f in batch.factors):
            raise CryptoError(f"member {self.index}: the product tree has not reached its last level")
        shares = [(f[0] * f[1] + mask) % prime for f, mask in zip(batch.factors, batch.mask_sum)]
        batch.factors, batch.mask_sum = [], []
        self._phase = "opened-sieved"
        return [self._broadcast(Step.OPEN_SIEVED, shares)]

    def open_modulus(self, inbox: Sequence[Message]) -> list[Message]:
        """Open ``V``; form the shares of ``p`` and ``q``; broadcast the degree-2t shares of ``N = p q``."""
        self._expect("opened-sieved")
        batch, prm = self._live_batch(), self.params
        prime, m = prm.sieve_field, prm.sieve_modulus
        opened = self._open(self._gather(inbox, {Step.OPEN_SIEVED: 2 * batch.pairs})[Step.OPEN_SIEVED], prime)
        field_shares, additive = [], []
        for x, x_sum, v in zip(batch.own_x, batch.x_sum, opened):
            public = prm.offset + v % m + m
            additive.append(public + x if self.index == 1 else x)
            field_shares.append((public + x_sum) % prime)
        pairs = batch.pairs
        batch.p_shares, batch.q_shares = additive[:pairs], additive[pairs:]
        batch.own_x, batch.x_sum = [], []
        n_shares = [field_shares[k] * field_shares[pairs + k] % prime for k in range(pairs)]
        self._phase = "opened-modulus"
        return [self._broadcast(Step.OPEN_MODULUS, n_shares)]

    def adopt_candidates(
        self, moduli: Sequence[mpz], p_shares: Sequence[mpz], q_shares: Sequence[mpz], *, coin: bytes
    ) -> None:
        """Take candidates shared by other means (this member's shares only) for the biprimality test.

        ``coin`` is the public random string the bases are drawn from (in :meth:`sieve`, the hash of
        every member's seed). Shares must follow the protocol's form: member 1's ``= 3 mod 4``, the
        others' ``= 0 mod 4``, all non-negative.
        """
        self._expect("idle")
        if not len(moduli) == len(p_shares) == len(q_shares) >= 1:
            raise CryptoError("adopt_candidates needs one (N, p_i, q_i) per candidate, at least one")
        residue = 3 if self.index == 1 else 0
        for p_i, q_i in zip(p_shares, q_shares):
            if p_i < 0 or q_i < 0 or p_i % 4 != residue or q_i % 4 != residue:
                raise CryptoError(f"member {self.index}'s candidate shares must be non-negative and {residue} mod 4")
        self._batch = _Batch(pairs=len(moduli), coin_seed=b"", coin=coin)
        self._batch.moduli = [mpz(x) for x in moduli]
        self._batch.p_shares, self._batch.q_shares = [mpz(x) for x in p_shares], [mpz(x) for x in q_shares]
        self._phase = "adopted"

    def _exponent(self, k: int) -> mpz:
        """This member's share of ``(N - p - q + 1) / 4`` for candidate ``k`` (member 1 holds ``N + 1``)."""
        batch = self._live_batch()
        s = batch.p_shares[k] + batch.q_shares[k]
        if self.index == 1:
            s = batch.moduli[k] + 1 - s
        if s % 4:
            raise CryptoError(f"member {self.index}'s share of phi for candidate {k} is not divisible by 4")
        return s // 4

    def jacobi(self, inbox: Sequence[Message]) -> list[Message]:
        """Open every ``N``; trial-divide it; broadcast ``Q_i`` for the first base of each survivor."""
        self._expect("opened-modulus", "adopted")
        batch, prm = self._live_batch(), self.params
        if self._phase == "opened-modulus":
            got = self._gather(inbox, {Step.OPEN_MODULUS: batch.pairs})[Step.OPEN_MODULUS]
            batch.moduli = self._open(got, prm.sieve_field)
            for n in batch.moduli:
                if n.bit_length() != prm.key_bits:
                    raise CryptoError(
                        f"member {self.index}: a candidate N has {n.bit_length()} bits, not {prm.key_bits}"
                    )
        elif inbox:
            raise CryptoError(f"member {self.index} adopted its candidates and expects no messages")
        self.counters["moduli"] += batch.pairs
        batch.live = [k for k, n in enumerate(batch.moduli) if gmpy2.gcd(n, prm.trial_divisor) == 1]
        self.counters["trial_division_survivors"] += len(batch.live)
        self._phase = "jacobi"
        if not batch.live:
            return []
        values = [
            gmpy2.powmod(_jacobi_base(batch.coin, batch.moduli[k], 0), self._exponent(k), batch.moduli[k])
            for k in batch.live
        ]
        return [self._broadcast(Step.JACOBI, values)]

    def _passes(self, by_sender: Mapping[int, tuple[mpz, ...]], position: int, modulus: mpz) -> bool:
        product = mpz(1)
        for i in self.params.members:
            if i != 1:
                product = product * by_sender[i][position] % modulus
        first = by_sender[1][position] % modulus
        return bool(first == product or first == modulus - product)

    def confirm(self, inbox: Sequence[Message]) -> list[Message]:
        """Keep the candidates that pass the first base; broadcast ``Q_i`` for the others; share the gcd step."""
        self._expect("jacobi")
        batch, prm = self._live_batch(), self.params
        got = self._gather(inbox, {Step.JACOBI: len(batch.live)})[Step.JACOBI]
        batch.live = [k for pos, k in enumerate(batch.live) if self._passes(got, pos, batch.moduli[k])]
        self.counters["jacobi_passed"] += len(batch.live)
        self._phase = "confirm"
        if not batch.live:
            return []
        q_values = []
        gcd_values = []
        for k in batch.live:
            n, e = batch.moduli[k], self._exponent(k)
            q_values += [gmpy2.powmod(_jacobi_base(batch.coin, n, b), e, n) for b in range(1, prm.biprimality_bases)]
            r, mask = random_below(n), random_below(prm.gcd_mask_bound)
            for value in (r, mask, batch.p_shares[k] + batch.q_shares[k]):
                gcd_values.append(share(value, degree=prm.degree, parties=prm.parties, prime=prm.sieve_field))
        return [self._broadcast(Step.CONFIRM, q_values)] + self._private(Step.GCD_SHARES, gcd_values)

    def open_gcd(self, inbox: Sequence[Message]) -> list[Message]:
        """Keep the candidates that pass every base; broadcast the shares of ``r (p + q - 1) + N S``."""
        self._expect("confirm")
        batch, prm = self._live_batch(), self.params
        prime, bases = prm.sieve_field, prm.biprimality_bases - 1
        live = batch.live
        got = self._gather(inbox, {Step.CONFIRM: bases * len(live), Step.GCD_SHARES: 3 * len(live)})
        confirm, gcd = got[Step.CONFIRM], got[Step.GCD_SHARES]
        shares = []
        passed = []
        for pos, k in enumerate(live):
            n = batch.moduli[k]
            if not all(self._passes(confirm, pos * bases + b, n) for b in range(bases)):
                continue
            r, mask, s = (sum((gcd[i][3 * pos + o] for i in prm.members), mpz(0)) % prime for o in range(3))
            passed.append(k)
            shares.append((r * (s - 1) + n * mask) % prime)
        batch.live = passed
        self.counters["all_bases_passed"] += len(passed)
        self._phase = "gcd"
        return [self._broadcast(Step.OPEN_GCD, shares)] if passed else []

    def accept(self, inbox: Sequence[Message]) -> None:
        """Accept the first candidate with ``gcd(r (p + q - 1) mod N, N) = 1``; forget the batch."""
        self._expect("gcd")
        batch, prm = self._live_batch(), self.params
        opened = self._open(self._gather(inbox, {Step.OPEN_GCD: len(batch.live)})[Step.OPEN_GCD], prm.sieve_field)
        for k, z in zip(batch.live, opened):
            n = batch.moduli[k]
            if gmpy2.gcd(z % n, n) == 1:
                self._modulus, self._p_share, self._q_share = n, batch.p_shares[k], batch.q_shares[k]
                self.counters["accepted"] += 1
                break
        self._batch = None
        self._phase = "accepted" if self._modulus is not None else "idle"

    def end_batch(self) -> None:
        """Forget a batch none of whose candidates survived (every member sees the same public outcome)."""
        self._batch = None
        self._phase = "idle"

    # -- key derivation --------------------------------------------------------------------------

    def share_key(self) -> list[Message]:
        """Key round 1: share ``p_i + q_i``, ``R_i < N`` and two masks; publish ``h_i = (-x_i^2)^N``."""
        self._expect("accepted")
        prm = self.params
        n = self._require(self._modulus)
        self._rho = random_below(prm.rho_bound)
        values = [
            share(v, degree=prm.degree, parties=prm.parties, prime=prm.key_field)
            for v in (self.p_share + self.q_share, random_below(n), random_below(prm.theta_mask_bound), self._rho)
        ]
        x = random_unit(n)
        h_i = gmpy2.powmod(n - x * x % n, n, n * n)
        self._phase = "key-shared"
        return self._private(Step.KEY_SHARES, values) + [self._broadcast(Step.DJN_BASE, [h_i])]

    def open_key(self, inbox: Sequence[Message]) -> list[Message]:
        """Key round 2: broadcast the shares of ``phi R + N S`` and ``phi R + sum rho_i``; form ``h_s``."""
        self._expect("key-shared")
        prm = self.params
        prime, n = prm.key_field, self._require(self._modulus)
        got = self._gather(inbox, {Step.KEY_SHARES: 4, Step.DJN_BASE: 1})
        s, r, mask, rho = (sum((got[Step.KEY_SHARES][i][o] for i in prm.members), mpz(0)) % prime for o in range(4))
        phi_r = (n + 1 - s) * r % prime
        nsquare = n * n
        hs = mpz(1)
        for i in prm.members:
            hs = hs * got[Step.DJN_BASE][i][0] % nsquare
        # prod (-x_i^2) = (-1)^n (prod x_i)^2, and (-1)^N = -1 mod N^2: fix the sign for even n.
        self._djn_base = hs if prm.parties % 2 else nsquare - hs
        self._phase = "key-opened"
        return [self._broadcast(Step.OPEN_KEY, [(phi_r + n * mask) % prime, (phi_r + rho) % prime])]

    def reshare_key(self, inbox: Sequence[Message]) -> list[Message]:
        """Key round 3: open ``theta`` and ``W``; share ``Delta * delta_i`` over the integers."""
        self._expect("key-opened")
        prm = self.params
        n = self._require(self._modulus)
        masked, w = self._open(self._gather(inbox, {Step.OPEN_KEY: 2})[Step.OPEN_KEY], prm.key_field)
        theta = masked % n
        if gmpy2.gcd(theta, n) != 1:
            raise CryptoError(
                "theta = phi R mod N is not a unit: gcd(N, p + q - 1) > 1 (N is no product of two "
                "distinct primes) or R hit a factor; generate a new modulus"
            )
        rho = self._require(self._rho, "mask rho")
        delta_i = w - rho if self.index == 1 else -rho
        shares = share_integer(delta_i, degree=prm.degree, parties=prm.parties, coefficient_bound=prm.coefficient_bound)
        self._theta, self._rho = theta, None
        self._phase = "key-reshared"
        return self._private(Step.KEY_RESHARE, [shares])

    def finish_key(self, inbox: Sequence[Message]) -> None:
        """Key round 4 (local): sum the integer shares into this member's key share."""
        self._expect("key-reshared")
        prm = self.params
        got = self._gather(inbox, {Step.KEY_RESHARE: 1})[Step.KEY_RESHARE]
        n = self._require(self._modulus)
        public_key = PublicKey(n=n, hs=self._require(self._djn_base, "DJN base"))
        public = DealerlessPublicKey(public_key, prm.threshold, prm.parties, self._require(self._theta, "theta"))
        self.key_share = DealerlessKeyShare(self.index, sum((got[i][0] for i in prm.members), mpz(0)), public)
        self._phase = "keyed"


def _jacobi_base(coin: bytes, modulus: mpz, number: int) -> mpz:
    """The ``number``-th public base with Jacobi symbol ``(g/N) = 1``, hashed from the joint coin."""
    width = (int(modulus.bit_length()) + 7) // 8
    prefix = b"fedledger/dkg-biprimality-base/v1" + coin + int(modulus).to_bytes(width, "big")
    prefix += number.to_bytes(4, "big")
    counter = 0
    while True:
        digest = hashlib.shake_256(prefix + counter.to_bytes(4, "big")).digest(width + 16)
        g = mpz(int.from_bytes(digest, "big")) % modulus
        if gmpy2.jacobi(g, modulus) == 1:
            return g
        counter += 1


Observer = Callable[[str, Sequence[DkgMember], Sequence[Message]], None]


@dataclass(frozen=True)
class DkgStats:
    """What a run cost: candidates at each stage, message rounds and bytes, compute time.

    Times are CPU seconds. ``critical_path_s`` adds, round by round, the slowest member's time:
    the compute time of the protocol with each member on its own machine (network latency not
    included). ``cpu_s`` is every member's time added up (this in-process simulation's cost).
    ``step_rounds`` counts the rounds of each step that sent anything: a batch whose moduli all
    fail the trial division ends without the first-base round.
    """

    batches: int
    sieved: int
    moduli: int
    trial_division_survivors: int
    jacobi_passed: int
    rounds: int
    rounds_per_batch: int
    step_rounds: dict[str, int]
    messages: int
    bytes_sent: int
    cpu_s: float
    critical_path_s: float
    step_cpu_s: dict[str, float]
    step_critical_path_s: dict[str, float]


class Committee:
    """The in-memory driver: ``parties`` members and the message exchange between them.

    Stands in for the network: hands each member its inbox, collects what it sends, and counts
    rounds (one per exchange in which anything is sent), messages and bytes (a broadcast counts
    once per other member; a member's message to itself is free). ``observe``, if given, sees the
    members and the messages after every round (the tests use it to inspect each member's state).
    """

    def __init__(self, params: DkgParameters, *, observe: Observer | None = None) -> None:
        self.params = params
        self.members = [DkgMember(i, params) for i in params.members]
        self._observe = observe
        self._inboxes: dict[int, list[Message]] = {i: [] for i in params.members}
        self._batches = 0
        self._rounds = 0
        self._messages = 0
        self._bytes = 0
        self._cpu = 0.0
        self._critical = 0.0
        self._step_cpu: defaultdict[str, float] = defaultdict(float)
        self._step_critical: defaultdict[str, float] = defaultdict(float)
        self._step_rounds: Counter[str] = Counter()

    def _round(self, name: str, action: Callable[[DkgMember, list[Message]], list[Message] | None]) -> bool:
        """Run ``action`` on every member with its inbox; deliver what they send. True if anything was."""
        sent: list[Message] = []
        slowest = 0.0
        for member in self.members:
            inbox, self._inboxes[member.index] = self._inboxes[member.index], []
            # CPU time, not wall time: members share this process (and maybe a busy machine).
            start = time.process_time()
            out = action(member, inbox) or []
            elapsed = time.process_time() - start
            slowest = max(slowest, elapsed)
            self._cpu += elapsed
            self._step_cpu[name] += elapsed
            for msg in out:
                if msg.sender != member.index:
                    raise CryptoError(f"member {member.index} tried to send a message as member {msg.sender}")
            sent += out
        self._critical += slowest
        self._step_critical[name] += slowest
        for msg in sent:
            targets = list(self.params.members) if msg.recipient == BROADCAST else [msg.recipient]
            for target in targets:
                self._inboxes[target].append(msg)
                if target != msg.sender:
                    self._messages += 1
                    self._bytes += msg.payload_bytes
        if sent:
            self._rounds += 1
            self._step_rounds[name] += 1
        if self._observe is not None:
            self._observe(name, self.members, sent)
        return bool(sent)

    def generate_modulus(self, *, batch_size: int = DEFAULT_BATCH_SIZE, max_batches: int | None = None) -> mpz:
        """Run batches of ``batch_size`` candidate pairs until one ``N`` passes; return ``N``.

        Raises
        ------
        CryptoError
            If ``max_batches`` batches pass without a biprime, or the members disagree on ``N``.
        """
        while max_batches is None or self._batches < max_batches:
            self._batches += 1
            self._round("sieve", lambda m, _: m.sieve(batch_size))
            for _ in range(self.params.reduction_rounds):
                self._round("multiply", DkgMember.multiply)
            self._round("open_sieved", DkgMember.open_sieved)
            self._round("open_modulus", DkgMember.open_modulus)
            modulus = self._test_candidates()
            if modulus is not None:
                return modulus
        raise CryptoError(f"no biprime found in {max_batches} batches of {batch_size} candidate pairs")

    def test_candidates(
        self, moduli: Sequence[mpz], shares: Sequence[Sequence[tuple[mpz, mpz]]], *, coin: bytes | None = None
    ) -> mpz | None:
        """Run the biprimality test on candidates shared by other means; return the accepted ``N``.

        ``shares[j][k]`` is member ``j + 1``'s ``(p_i, q_i)`` for candidate ``k``; each member is
        handed only its own.
        """
        if len(shares) != self.params.parties:
            raise CryptoError(f"{len(shares)} members' shares given for {self.params.parties} members")
        coin = coin if coin is not None else secrets.token_bytes(32)
        for member, own in zip(self.members, shares):
            member.adopt_candidates(moduli, [p for p, _ in own], [q for _, q in own], coin=coin)
        return self._test_candidates()

    def _test_candidates(self) -> mpz | None:
        if self._round("jacobi", DkgMember.jacobi) and self._round("confirm", DkgMember.confirm):
            if self._round("open_gcd", DkgMember.open_gcd):
                self._round("accept", DkgMember.accept)
                results = {m.modulus for m in self.members}
                if len(results) != 1:
                    raise CryptoError("members disagree on the accepted modulus")
                accepted = results.pop()
                if accepted is not None:
                    return accepted
        for member in self.members:
            member.end_batch()
        self._inboxes = {i: [] for i in self.params.members}
        return None

    def derive_key(self) -> tuple[DealerlessPublicKey, list[DealerlessKeyShare]]:
        """Run the key rounds on the accepted modulus; return the public key and every member's share."""
        self._round("share_key", lambda m, _: m.share_key())
        self._round("open_key", DkgMember.open_key)
        self._round("reshare_key", DkgMember.reshare_key)
        self._round("finish_key", DkgMember.finish_key)
        shares = [m.key_share for m in self.members]
        if any(s is None for s in shares):
            raise CryptoError("a member did not finish its key share")
        key_shares = [s for s in shares if s is not None]
        if len({s.public for s in key_shares}) != 1:
            raise CryptoError("members disagree on the public key")
        return key_shares[0].public, key_shares

    @property
    def stats(self) -> DkgStats:
        """Counts and times of everything run so far (public counters as member 1 saw them)."""
        c = self.members[0].counters
        return DkgStats(
            batches=self._batches,
            sieved=c["sieved"],
            moduli=c["moduli"],
            trial_division_survivors=c["trial_division_survivors"],
            jacobi_passed=c["jacobi_passed"],
            rounds=self._rounds,
            rounds_per_batch=self.params.rounds_per_batch,
            step_rounds=dict(self._step_rounds),
            messages=self._messages,
            bytes_sent=self._bytes,
            cpu_s=self._cpu,
            critical_path_s=self._critical,
            step_cpu_s=dict(self._step_cpu),
            step_critical_path_s=dict(self._step_critical),
        )


def generate_dealerless_key(
    *,
    key_bits: int,
    parties: int,
    threshold: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    biprimality_bases: int = DEFAULT_BIPRIMALITY_BASES,
    trial_division_bound: int = DEFAULT_TRIAL_DIVISION_BOUND,
) -> tuple[DealerlessPublicKey, list[DealerlessKeyShare]]:
    """Generate a threshold Paillier key with no dealer (semi-honest members, simulated in memory).

    Returns the public key and member ``j``'s share at position ``j - 1``; see :class:`Committee`
    to keep the members, the transcript counts or an observer.
    """
    params = DkgParameters(
        key_bits=key_bits,
        parties=parties,
        threshold=threshold,
        biprimality_bases=biprimality_bases,
        trial_division_bound=trial_division_bound,
    )
    committee = Committee(params)
    committee.generate_modulus(batch_size=batch_size)
    return committee.derive_key()


def partial_decrypt(share: DealerlessKeyShare, ciphertexts: Sequence[mpz]) -> DealerlessPartial:
    """Member ``share.index``'s partial decryptions ``c^(s_j) mod N^2`` (no proof: semi-honest)."""
    pk = share.public.public_key
    values = []
    for j, c in enumerate(ciphertexts):
        if not pk.is_unit(mpz(c)):
            raise CryptoError(f"ciphertext {j} is not an invertible element modulo n^2")
        values.append(gmpy2.powmod(c, share.secret, pk.nsquare))
    return DealerlessPartial(share.index, tuple(values))


def combine_partials(public: DealerlessPublicKey, partials: Sequence[DealerlessPartial]) -> list[mpz]:
    """Combine ``threshold`` members' partials into the plaintexts (Lagrange in the exponent).

    ``prod c_j^(Delta lambda_j) = c^(Delta^2 D) = 1 + m Delta^2 theta N (mod N^2)``.

    Raises
    ------
    CryptoError
        If fewer than ``threshold`` members' partials are given, a member sent two, or the
        partials do not combine (not all from this key, or of different ciphertexts).
    """
    by_index: dict[int, DealerlessPartial] = {}
    for partial in partials:
        if not 1 <= partial.index <= public.parties:
            raise CryptoError(f"no committee member has index {partial.index} (1..{public.parties})")
        if partial.index in by_index:
            raise CryptoError(f"member {partial.index} sent more than one partial decryption")
        by_index[partial.index] = partial
    if len(by_index) < public.threshold:
        raise CryptoError(f"{len(by_index)} partial decryptions given, {public.threshold} needed")
    used = sorted(by_index)[: public.threshold]
    lengths = {len(by_index[i].values) for i in used}
    if len(lengths) != 1:
        raise CryptoError(f"members' partials cover different numbers of ciphertexts: {sorted(lengths)}")
    pk = public.public_key
    n, nsquare = pk.n, pk.nsquare
    lambdas = {i: integer_lagrange_at_zero(i, used, public.parties) for i in used}
    scale = gmpy2.invert(public.delta * public.delta * public.theta, n)
    plaintexts = []
    for k in range(lengths.pop()):
        acc = mpz(1)
        for i in used:
            acc = acc * gmpy2.powmod(by_index[i].values[k], lambdas[i], nsquare) % nsquare
        if acc % n != 1:
            raise CryptoError(f"partials of ciphertext {k} do not combine: from another key or ciphertext")
        plaintexts.append((acc - 1) // n * scale % n)
    return plaintexts


def decrypt_vector(
    public: DealerlessPublicKey, vector: EncryptedVector, partials: Sequence[DealerlessPartial]
) -> npt.NDArray[np.float64]:
    """Combine members' partials of a packed vector into its weighted sum of values."""
    if vector.public_key.fingerprint != public.public_key.fingerprint:
        raise KeyMismatchError("the vector was encrypted under a different public key")
    return decode_plaintexts(vector, combine_partials(public, partials))
