"""Every core of a party's machine for its own exponentiations: one shared pool of worker processes.

Paillier's work is independent per ciphertext (``r^n`` for encryption, ``c^(2 Delta s_i)`` for a
partial decryption), so it splits into contiguous chunks, one per core. A party on a bigger
machine gets faster with no setting.

The workers are started by a fork server: forking the calling process itself would copy whatever
threads it runs (gRPC's, Flower's) in whatever state they are in. The pool lives as long as the
process and is reused across rounds. What a worker receives (ciphertexts, and for a partial
decryption the member's own key share as an exponent) stays on the party's machine: the pool
talks to its workers over local pipes only.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Below this many items per worker, shipping the work costs more than it saves (a 2048-bit
# exponentiation modulo n^2 with a full-size exponent takes about 10 ms).
MIN_ITEMS_PER_WORKER = 8

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The process's shared pool, with at least ``workers`` processes (started once, then reused)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=False)
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["fedledger.crypto.threshold", "fedledger.crypto.paillier"])
            _pool, _pool_size = ProcessPoolExecutor(max_workers=workers, mp_context=context), workers
        return _pool


def resolve_workers(workers: int | None, items: int) -> int:
    """How many processes to use for ``items`` items: ``workers`` (None: every core), fewer when the
    chunks would be too small to pay for themselves."""
    wanted = available_cores() if workers is None else workers
    return max(1, min(wanted, items // MIN_ITEMS_PER_WORKER))


def map_chunks(fn: Callable[[list[T]], list[R]], items: Sequence[T], *, workers: int | None = None) -> list[R]:
    """Apply ``fn`` to contiguous chunks of ``items`` on up to ``workers`` processes, keeping order.

    ``workers=None`` uses every core this process may run on; 1 runs here. ``fn`` must be picklable
    (a module-level function, or a ``functools.partial`` of one).
    """
    count = resolve_workers(workers, len(items))
    if count <= 1:
        return fn(list(items))
    size = -(-len(items) // count)
    chunks = [list(items[i:i + size]) for i in range(0, len(items), size)]
    return [x for part in worker_pool(count).map(fn, chunks) for x in part]
