"""benchmarks/fl_experiment.py: its cells, its noise calibration, and the anchor's step being FedLedger's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from fedledger.fl.rounds import PrivacyUnit, ServerStep


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "fl_experiment.py"
    spec = importlib.util.spec_from_file_location("fl_experiment", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fl_experiment"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


fx = _load()


def test_the_default_run_has_four_cells_and_runs_he_in_the_iid_ones() -> None:
    # Act
    _, settings = fx.parse([])

    # Assert
    assert [c.key for c in settings.cells] == ["iid-3", "iid-1", "dirichlet-3", "dirichlet-1"]
    assert settings.he_cells == ("iid-3", "iid-1")
    assert (settings.rounds, settings.sample_rate, settings.clip_norm, settings.key_bits) == (40, 0.5, 4.0, 2048)


def test_quick_is_one_small_cell_with_he() -> None:
    _, settings = fx.parse(["--quick"])

    assert [c.key for c in settings.cells] == ["iid-3"]
    assert settings.he_cells == ("iid-3",)
    assert (settings.companies, settings.rounds, settings.key_bits, settings.committee) == (3, 3, 1024, 3)


@pytest.mark.parametrize(("text", "expected"), [("all", ("iid-3", "iid-1")), ("none", ()), ("iid-1", ("iid-1",)),
                                                 (" iid-1 , iid-3", ("iid-3", "iid-1"))])
def test_he_cells_are_named_by_cell_key_in_the_cells_order(text: str, expected: tuple[str, ...]) -> None:
    cells = fx.parse_cells("iid", "3,1")

    assert fx.parse_he_cells(text, cells) == expected


def test_an_he_cell_outside_the_run_is_refused_by_name() -> None:
    cells = fx.parse_cells("iid", "3")

    with pytest.raises(ValueError, match="dirichlet-3"):
        fx.parse_he_cells("dirichlet-3", cells)


def test_each_variant_spends_at_most_its_cells_epsilon_and_opacus_agrees() -> None:
    # Arrange
    _, settings = fx.parse(["--rounds", "10"])

    for epsilon in (3.0, 1.0):
        noise = fx.Noise.calibrate(settings, epsilon)
        spent = [
            fx.Privacy(PrivacyUnit.RECORD, noise.record, settings.sample_rate, 1, settings.rounds, settings.delta),
            fx.Privacy(PrivacyUnit.RECORD, noise.local, settings.local_sample_rate, settings.local_steps,
                       settings.rounds, settings.delta),
            fx.Privacy(PrivacyUnit.COMPANY, noise.company, 1.0, 1, settings.rounds, settings.delta),
        ]

        # Assert
        for privacy in spent:
            assert privacy.epsilon <= epsilon
            assert privacy.opacus_epsilon == pytest.approx(privacy.epsilon, rel=1e-6)
    assert fx.Noise.calibrate(settings, 1.0).record > fx.Noise.calibrate(settings, 3.0).record


def test_torch_sgd_momentum_takes_the_leaders_server_step() -> None:
    # The anchor (Opacus over torch SGD) and HE + DP (ServerStep) must move the model alike.
    # Arrange
    rng = np.random.default_rng(0)
    gradients = [rng.normal(size=5) for _ in range(4)]
    weight = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    optimizer = torch.optim.SGD([weight], lr=0.5, momentum=0.9)
    models = [np.zeros(5)]

    # Act
    for g in gradients:
        weight.grad = torch.from_numpy(g.copy())
        optimizer.step()
        previous = models[-2].astype(np.float32) if len(models) > 1 else None
        models.append(ServerStep(lr=0.5, momentum=0.9, previous=previous).apply(models[-1], -g))

    # Assert
    np.testing.assert_allclose(weight.detach().numpy(), models[-1], rtol=1e-6, atol=1e-6)
