"""Unit tests of the warm SuperNode: the idle-wait cap, and a guard on the Flower loop it adjusts."""

from __future__ import annotations

import importlib.metadata
import inspect
import time
import tomllib
import types
from pathlib import Path

from fedledger.node import supernode


def test_capped_sleeps_wait_at_most_the_cap_and_the_rest_of_time_is_untouched() -> None:
    module = types.ModuleType("loop")
    module.time = time  # type: ignore[attr-defined]

    supernode.cap_idle_waits(module, 0.01)
    started = time.monotonic()
    module.time.sleep(3)  # type: ignore[attr-defined]

    assert time.monotonic() - started < 1.0
    assert module.time.monotonic is time.monotonic  # type: ignore[attr-defined]
    assert time.sleep is not module.time.sleep  # type: ignore[attr-defined]  # the real module is unchanged


def test_the_flower_loop_the_cap_adjusts_is_the_one_pinned() -> None:
    # cap_idle_waits shortens Flower 1.42's SuperNode waits through its module's ``time``: if an
    # upgrade moves them, this fails instead of the node silently polling every 3 s again.
    from flwr.supernode import start_client_internal

    assert importlib.metadata.version("flwr").startswith("1.42.")
    source = inspect.getsource(start_client_internal)
    assert "time.sleep(3)" in source and "time.sleep(0.5)" in source
    assert start_client_internal.time is time or hasattr(start_client_internal.time, "sleep")


def test_the_node_runs_only_the_fedledger_app_it_has_installed() -> None:
    from flwr.common.config import get_metadata_from_config

    project = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())

    assert get_metadata_from_config(project)[0] == supernode.FAB_ID
