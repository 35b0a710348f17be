"""Unit tests of the shortened Flower waits, and a guard on the Flower code they adjust."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import threading
import time
import tomllib
import types
from pathlib import Path

import pytest

from fedledger.fl.flower_waits import BACKOFF_CAP, INITIAL_BACKOFF, shorten_waits, signal_stored_messages
from fedledger.node import supernode


def test_capped_sleeps_wait_at_most_the_cap_and_the_rest_of_time_is_untouched() -> None:
    module = types.ModuleType("loop")
    module.time = time  # type: ignore[attr-defined]

    assert shorten_waits(module, sleep_cap=0.01) == ["time.sleep"]
    started = time.monotonic()
    module.time.sleep(3)  # type: ignore[attr-defined]

    assert time.monotonic() - started < 1.0
    assert module.time.monotonic is time.monotonic  # type: ignore[attr-defined]
    assert time.sleep is not module.time.sleep  # type: ignore[attr-defined]  # the real module is unchanged


def test_object_pulls_start_with_a_short_backoff_and_are_wrapped_once() -> None:
    seen = {}
    module = types.ModuleType("pulls")
    module.pull_objects = lambda ids, **kw: seen.update(kw)  # type: ignore[attr-defined]

    assert shorten_waits(module) == ["pull_objects"]
    assert shorten_waits(module) == []
    module.pull_objects(["x"])  # type: ignore[attr-defined]

    assert seen == {"initial_backoff": INITIAL_BACKOFF, "backoff_cap": BACKOFF_CAP}


@pytest.mark.parametrize("name, waits, pulls", [
    ("flwr.supernode.start_client_internal", ["time.sleep(3)", "time.sleep(0.5)"], "pull_objects"),
    ("flwr.supernode.runtime.run_clientapp", [], "pull_and_inflate_object_from_tree"),
    ("flwr.superlink.grid.http_grid", [], "pull_objects"),
])
def test_the_flower_code_the_waits_adjust_is_the_one_pinned(name: str, waits: list[str], pulls: str) -> None:
    # If an upgrade moves these, this fails instead of the rounds silently waiting seconds again.
    module = importlib.import_module(name)

    assert importlib.metadata.version("flwr").startswith("1.42.")
    source = inspect.getsource(module)
    assert all(wait in source for wait in waits)
    assert {"initial_backoff", "backoff_cap"} <= set(inspect.signature(getattr(module, pulls)).parameters)


def test_the_worker_is_woken_when_the_supernode_loop_stores_a_message_and_only_then() -> None:
    pulled: list[int | None] = [None, 7]
    module = types.ModuleType("fake_loop")
    module._pull_and_store_message = lambda **kwargs: pulled.pop(0)  # type: ignore[attr-defined]
    stored = threading.Event()

    assert signal_stored_messages(module, stored)
    assert module._pull_and_store_message(state="s") is None and not stored.is_set()  # type: ignore[attr-defined]
    assert module._pull_and_store_message(state="s") == 7 and stored.is_set()  # type: ignore[attr-defined]
    assert not signal_stored_messages(module, threading.Event())  # wrapped once
    assert not signal_stored_messages(types.ModuleType("no_loop"), stored)


def test_the_supernode_loop_calls_the_step_the_worker_is_woken_by_through_its_module_name() -> None:
    from flwr.supernode import start_client_internal

    source = inspect.getsource(start_client_internal.start_client_internal)
    assert "run_id = _pull_and_store_message(" in source and "if run_id is None:" in source


def test_the_node_runs_only_the_fedledger_app_it_has_installed() -> None:
    from flwr.common.config import get_metadata_from_config

    project = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())

    assert get_metadata_from_config(project)[0] == supernode.FAB_ID
