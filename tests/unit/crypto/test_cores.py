"""Unit tests of the shared worker processes: order kept, small jobs kept here, every core by default."""

from __future__ import annotations

from functools import partial

import pytest
from gmpy2 import mpz

from fedledger.crypto import cores
from fedledger.crypto.threshold import _powmod_all


def test_chunks_come_back_in_order_from_two_workers() -> None:
    bases = [mpz(b) for b in range(2, 2 + 40)]
    square = partial(_powmod_all, exponent=mpz(2), modulus=mpz(10**9 + 7))

    assert cores.map_chunks(square, bases, workers=2) == [b * b % (10**9 + 7) for b in bases]


@pytest.mark.parametrize("workers, items, expected", [
    (None, 10_000, "cores"),            # default: every core this process may run on
    (4, 10_000, 4),
    (4, 3 * cores.MIN_ITEMS_PER_WORKER, 3),  # no worker gets fewer than the minimum
    (8, cores.MIN_ITEMS_PER_WORKER - 1, 1),  # too small to ship: runs here
    (1, 10_000, 1),
])
def test_the_number_of_workers_follows_the_cores_and_the_size_of_the_job(workers: int | None, items: int,
                                                                          expected: int | str) -> None:
    want = cores.available_cores() if expected == "cores" else expected

    assert cores.resolve_workers(workers, items) == want


def test_a_small_job_runs_in_this_process_without_starting_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(workers: int) -> None:
        raise AssertionError(f"a pool of {workers} was started for a small job")

    monkeypatch.setattr(cores, "worker_pool", no_pool)

    assert cores.map_chunks(lambda xs: [x + 1 for x in xs], [1, 2, 3], workers=None) == [2, 3, 4]
