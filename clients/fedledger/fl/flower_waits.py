"""Flower 1.42's fixed waits, shortened for rounds measured in seconds.

Flower's deployment engine polls: a SuperNode sleeps 3 s after every pull from the SuperLink that
brings nothing and checks for its ClientApp's reply every 0.5 s, and whoever pulls a message's
objects (the SuperNode from the SuperLink, the ClientApp from its SuperNode, the ServerApp its
replies from the SuperLink) first waits 1 s, then 2, 4 ..., for an object not uploaded yet, which
is the usual case right after the message itself arrives. None of these has a setting.

:func:`shorten_waits` changes them for one Flower module, through that module's own names only:
its ``time`` (whose ``sleep`` is capped) and its ``pull_objects`` / ``pull_and_inflate_object_from_tree``
(called with a short first backoff). Flower itself is untouched; ``flwr`` is pinned to 1.42 and a
unit test fails if the waits move.

:func:`signal_stored_messages` removes one poll altogether: a SuperNode that keeps its ClientApp in
its own process (``fedledger.node.supernode``) is told the moment its loop has stored a message,
instead of its worker asking the runtime API for a task every few milliseconds.
"""

from __future__ import annotations

import functools
import threading
import types
from typing import Any

# The longest a polling loop sleeps between two looks.
SLEEP_CAP = 0.2
# The first wait for a missing object, doubling up to BACKOFF_CAP.
INITIAL_BACKOFF = 0.02
BACKOFF_CAP = 0.5

_PULLS = ("pull_objects", "pull_and_inflate_object_from_tree")


def shorten_waits(module: types.ModuleType, *, sleep_cap: float = SLEEP_CAP) -> list[str]:
    """Shorten the polling sleeps and object-pull backoffs of Flower's ``module``; return what changed."""
    changed = []
    real_time = getattr(module, "time", None)
    if isinstance(real_time, types.ModuleType):

        class _CappedTime(types.SimpleNamespace):
            def __getattr__(self, name: str) -> Any:
                return getattr(real_time, name)

        setattr(module, "time", _CappedTime(sleep=lambda seconds: real_time.sleep(min(float(seconds), sleep_cap))))
        changed.append("time.sleep")
    for name in _PULLS:
        pull = getattr(module, name, None)
        if callable(pull) and not isinstance(pull, functools.partial):
            setattr(module, name, functools.partial(pull, initial_backoff=INITIAL_BACKOFF, backoff_cap=BACKOFF_CAP))
            changed.append(name)
    return changed


# The SuperNode loop's step that pulls one message from the SuperLink and stores it as a task.
_STORE = "_pull_and_store_message"


def signal_stored_messages(module: types.ModuleType, stored: threading.Event) -> bool:
    """Set ``stored`` whenever ``module``'s SuperNode loop has pulled and stored a message; return
    whether the loop's step was found (and wrapped, once)."""
    step = getattr(module, _STORE, None)
    if not callable(step) or getattr(step, "__wrapped__", None) is not None:
        return False

    @functools.wraps(step)
    def pull_and_store(*args: Any, **kwargs: Any) -> Any:
        run_id = step(*args, **kwargs)
        if run_id is not None:
            stored.set()
        return run_id

    setattr(module, _STORE, pull_and_store)
    return True
