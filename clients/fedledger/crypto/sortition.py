"""Stake-weighted sortition of a round's leader and committee from the companies' VRF proofs.

Each company proves its VRF on the round's public input ``alpha = sortition_input(task, round,
seed)`` and publishes the proof. Anyone (the chaincode included) then runs ``select``:

1. verify every proof under its company's registered key and drop companies with zero stake;
2. combine the outputs: ``R = SHA-512(b"fedledger/sortition/v1/seed" || for each staked company in
   company-id order (UTF-8 byte order): u32be(len(id)) || id || beta)``;
3. draw ``committee_size + 1`` companies without replacement, each with probability exactly
   proportional to its stake among those not yet drawn. Draw ``k`` (from 0) hashes
   ``SHA-512(R || u32be(k) || u32be(attempt))`` for ``attempt = 0, 1, ...`` into a 512-bit
   big-endian integer ``v`` until ``v < floor(2^512 / S) * S`` (``S`` the remaining total stake;
   rejection removes the modulo bias), then takes the company at which the cumulative stake, in
   company-id order, first exceeds ``v mod S``. Draw 0 is the leader, the rest the committee.

Everything is integer arithmetic on bytes defined here: the Go chaincode recomputes the selection
to check the leader's claim, and any float (or platform-dependent rounding) would let the two
disagree. Stakes are non-negative integers (fixed-point units) summing to at most 2^63 - 1 so Go
holds them in an ``int64``; only the 512-bit reduction needs ``math/big``.

Known limitation (abort bias): a company sees its own output before publishing, and ``R`` depends
on every output, so a company can withhold its proof when it dislikes the outcome, forcing a
selection without it. It cannot steer the result towards anything, only veto once per round at the
cost of not taking part; the ledger records who did not publish, and callers should penalize it
(e.g. by excluding absentees from the next rounds) rather than rely on sortition alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fedledger.crypto.vrf import verify
from fedledger.errors import CryptoError, VrfError

INPUT_TAG = b"fedledger/sortition/v1"
SEED_TAG = b"fedledger/sortition/v1/seed"
# Stakes sum to at most this so every cumulative sum fits an int64 in the Go chaincode.
MAX_TOTAL_STAKE = 2**63 - 1

_DRAW_SPACE = 1 << 512


@dataclass(frozen=True)
class Candidate:
    """A company standing for selection: its VRF key, its proof on the round's input, its stake."""

    company: str
    public_key: bytes
    proof: bytes
    stake: int


@dataclass(frozen=True)
class Selection:
    """The round's leader, its committee in draw order, and the 64-byte combined seed ``R``."""

    leader: str
    committee: tuple[str, ...]
    seed: bytes


def sortition_input(task_id: str, round_number: int, seed: bytes) -> bytes:
    """Build the VRF input ``alpha`` every company proves on for one round.

    ``alpha = b"fedledger/sortition/v1" || u32be(len(task_id)) || task_id (UTF-8) ||
    u64be(round_number) || u32be(len(seed)) || seed``; the length prefixes make distinct
    (task, round, seed) triples give distinct inputs.

    Parameters
    ----------
    task_id
        The federated task's id.
    round_number
        The round, from 0 to 2^64 - 1.
    seed
        Public randomness fixed before the round (e.g. the previous round's combined seed).

    Returns
    -------
    bytes
        The VRF input ``alpha``.

    Raises
    ------
    CryptoError
        If the task id is empty, the round is out of range, or the seed is not bytes.
    """
    task = _company_bytes(task_id, "task id")
    if isinstance(round_number, bool) or not isinstance(round_number, int):
        raise CryptoError(f"round number must be an integer, got {type(round_number).__name__}")
    if not 0 <= round_number < 2**64:
        raise CryptoError(f"round number must be in [0, 2^64), got {round_number}")
    if not isinstance(seed, (bytes, bytearray, memoryview)):
        raise CryptoError(f"seed must be bytes, got {type(seed).__name__}")
    return INPUT_TAG + _prefixed(task) + round_number.to_bytes(8, "big") + _prefixed(bytes(seed))


def select(candidates: Iterable[Candidate], *, alpha: bytes, committee_size: int) -> Selection:
    """Verify every candidate's proof and draw the leader and committee in proportion to stake.

    Parameters
    ----------
    candidates
        One entry per company, in any order.
    alpha
        The round's VRF input, from ``sortition_input``.
    committee_size
        How many committee members to draw besides the leader.

    Returns
    -------
    Selection
        The leader, the committee (never containing the leader) and the combined seed.

    Raises
    ------
    VrfError
        If a proof does not verify; the message names the company.
    CryptoError
        If company ids repeat, a stake is negative or not an integer, the stakes sum past
        ``MAX_TOTAL_STAKE``, or fewer than ``committee_size + 1`` companies have stake.
    """
    if isinstance(committee_size, bool) or not isinstance(committee_size, int) or committee_size < 0:
        raise CryptoError(f"committee size must be a non-negative integer, got {committee_size!r}")
    by_id: dict[bytes, Candidate] = {}
    for candidate in candidates:
        key = _company_bytes(candidate.company, "company id")
        if key in by_id:
            raise CryptoError(f"duplicate company id {candidate.company!r}")
        _check_stake(candidate.company, candidate.stake)
        by_id[key] = candidate
    ordered = [by_id[key] for key in sorted(by_id)]
    _check_total(c.stake for c in ordered)

    outputs: list[tuple[str, bytes]] = []
    for candidate in ordered:
        try:
            beta = verify(candidate.public_key, alpha, candidate.proof)
        except VrfError as err:
            raise VrfError(f"company {candidate.company!r}: {err}") from err
        if candidate.stake > 0:
            outputs.append((candidate.company, beta))

    if len(outputs) < committee_size + 1:
        raise CryptoError(
            f"a leader and a committee of {committee_size} need {committee_size + 1} companies "
            f"with stake, got {len(outputs)}"
        )
    seed = combined_seed(outputs)
    drawn = draw(seed, {c.company: c.stake for c in ordered if c.stake > 0}, count=committee_size + 1)
    return Selection(leader=drawn[0], committee=drawn[1:], seed=seed)


def combined_seed(outputs: Sequence[tuple[str, bytes]]) -> bytes:
    """Hash the companies' VRF outputs, in company-id order, into the 64-byte round seed ``R``.

    Parameters
    ----------
    outputs
        ``(company id, beta)`` pairs, in any order.

    Raises
    ------
    CryptoError
        If a company id repeats or a beta is not 64 bytes.
    """
    entries: dict[bytes, bytes] = {}
    for company, beta in outputs:
        key = _company_bytes(company, "company id")
        if key in entries:
            raise CryptoError(f"duplicate company id {company!r}")
        if not isinstance(beta, bytes) or len(beta) != 64:
            raise CryptoError(f"VRF output of company {company!r} must be 64 bytes")
        entries[key] = beta
    h = hashlib.sha512(SEED_TAG)
    for key in sorted(entries):
        h.update(_prefixed(key) + entries[key])
    return h.digest()


def draw(seed: bytes, stakes: Mapping[str, int], *, count: int) -> tuple[str, ...]:
    """Draw ``count`` distinct companies, each with probability proportional to its stake.

    The walk is in company-id (UTF-8 byte) order, whatever the mapping's order.

    Parameters
    ----------
    seed
        The combined seed ``R``.
    stakes
        Positive stake per company.
    count
        How many companies to draw.

    Returns
    -------
    tuple[str, ...]
        The companies in draw order.

    Raises
    ------
    CryptoError
        If a stake is not a positive integer, the total passes ``MAX_TOTAL_STAKE``, or ``count``
        is negative or larger than the number of companies.
    """
    pool: list[tuple[bytes, str, int]] = []
    for company, stake in stakes.items():
        _check_stake(company, stake)
        if stake == 0:
            raise CryptoError(f"company {company!r} has zero stake and cannot be drawn")
        pool.append((_company_bytes(company, "company id"), company, stake))
    pool.sort()
    _check_total(stake for _, _, stake in pool)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(pool):
        raise CryptoError(f"cannot draw {count!r} of {len(pool)} companies")

    drawn: list[str] = []
    for k in range(count):
        total = sum(stake for _, _, stake in pool)
        target = _uniform_below(seed, k, total)
        cumulative = 0
        for index, (_, company, stake) in enumerate(pool):
            cumulative += stake
            if target < cumulative:
                drawn.append(company)
                del pool[index]
                break
    return tuple(drawn)


def _uniform_below(seed: bytes, k: int, bound: int) -> int:
    """An integer uniform in [0, bound) from draw ``k``, by rejection sampling 512-bit hashes."""
    limit = (_DRAW_SPACE // bound) * bound
    attempt = 0
    while True:
        digest = hashlib.sha512(seed + k.to_bytes(4, "big") + attempt.to_bytes(4, "big")).digest()
        value = int.from_bytes(digest, "big")
        if value < limit:
            return value % bound
        # Reached with probability below bound / 2^512 < 2^-449: never in practice, but it keeps
        # every company's chance exactly proportional to its stake.
        attempt += 1


def _company_bytes(company: str, what: str) -> bytes:
    if not isinstance(company, str) or not company:
        raise CryptoError(f"{what} must be a non-empty string, got {company!r}")
    try:
        return company.encode("utf-8")
    except UnicodeEncodeError as err:
        raise CryptoError(f"{what} {company!r} is not valid Unicode text") from err


def _check_stake(company: str, stake: int) -> None:
    if isinstance(stake, bool) or not isinstance(stake, int):
        raise CryptoError(f"stake of company {company!r} must be an integer, got {type(stake).__name__}")
    if stake < 0:
        raise CryptoError(f"stake of company {company!r} is negative ({stake})")


def _check_total(stakes: Iterable[int]) -> None:
    total = sum(stakes)
    if total > MAX_TOTAL_STAKE:
        raise CryptoError(f"total stake {total} exceeds the maximum {MAX_TOTAL_STAKE}")


def _prefixed(field: bytes) -> bytes:
    if len(field) >= 2**32:
        raise CryptoError("a sortition field is longer than 2^32 - 1 bytes")
    return len(field).to_bytes(4, "big") + field
