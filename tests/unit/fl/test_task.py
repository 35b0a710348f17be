"""Unit tests of the task layer: the registry, models, flat parameter vectors, local training and evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedledger.errors import DataError
from fedledger.fl.task import (
    TASKS,
    Dataset,
    LogisticRegression,
    SmallCNN,
    build_model,
    count_parameters,
    evaluate,
    get_flat,
    get_task,
    load_dataset,
    set_flat,
    train_local,
)

CNN_PARAMS = 20_522


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset("mnist-cnn", seed=0)


@pytest.fixture(scope="module")
def breast_cancer() -> Dataset:
    return load_dataset("breast-cancer-logreg", seed=0)


# --- registry and models -----------------------------------------------------------------------

def test_the_registry_pairs_each_model_with_a_dataset_that_fits_it(mnist: Dataset, breast_cancer: Dataset) -> None:
    assert {"mnist-cnn", "breast-cancer-logreg"} <= set(TASKS)
    digits = load_dataset("digits-logreg")
    datasets = {"mnist-cnn": mnist, "breast-cancer-logreg": breast_cancer, "digits-logreg": digits}
    for name, ds in datasets.items():
        logits = build_model(name)(torch.from_numpy(ds.x_test[:5]))
        assert logits.shape == (5, ds.num_classes)


def test_parameter_counts_are_those_documented() -> None:
    assert count_parameters(build_model("mnist-cnn")) == CNN_PARAMS
    assert count_parameters(build_model("breast-cancer-logreg")) == 30 * 2 + 2
    assert count_parameters(build_model("digits-logreg")) == 64 * 10 + 10
    cifar = build_model("cifar10-cnn")
    assert count_parameters(cifar) == 65_962
    assert cifar(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    for task in TASKS.values():
        assert f"{count_parameters(task.model()):,} parameters" in task.description


def test_an_unknown_task_is_refused_with_the_known_ones() -> None:
    with pytest.raises(DataError, match=r"unknown task 'resnet'; known tasks: breast-cancer-logreg, cifar10-cnn"):
        get_task("resnet")


def test_a_task_without_a_bundled_dataset_needs_a_path_and_a_bundled_one_takes_none(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'cifar10-cnn' needs a data path"):
        load_dataset("cifar10-cnn")
    with pytest.raises(DataError, match=r"'breast-cancer-logreg' .* takes no data path"):
        load_dataset("breast-cancer-logreg", data_path=tmp_path)


def test_a_data_path_selects_the_full_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"MNIST train images not found"):
        load_dataset("mnist-cnn", data_path=tmp_path)


def test_build_model_is_fixed_by_its_seed_and_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()

    a, b, c = build_model("mnist-cnn", seed=1), build_model("mnist-cnn", seed=1), build_model("mnist-cnn", seed=2)

    assert np.array_equal(get_flat(a), get_flat(b)) and not np.array_equal(get_flat(a), get_flat(c))
    assert torch.equal(torch.get_rng_state(), state)


def test_small_cnn_refuses_images_too_small_for_it() -> None:
    with pytest.raises(ValueError, match="too small"):
        SmallCNN(image_size=12)


# --- flat parameter vectors --------------------------------------------------------------------

def test_get_flat_is_float32_of_every_trainable_parameter_in_state_dict_order() -> None:
    model = LogisticRegression(3, 2)

    flat = get_flat(model)

    assert flat.dtype == np.float32 and flat.shape == (8,)
    np.testing.assert_array_equal(flat[:6], model.linear.weight.detach().numpy().reshape(-1))
    np.testing.assert_array_equal(flat[6:], model.linear.bias.detach().numpy())


def test_frozen_parameters_and_buffers_are_left_out() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2), torch.nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)

    flat = get_flat(model)

    # Linear(3, 2) bias (2) + BatchNorm affine (2 + 2) + Linear(2, 1) (3); no running statistics.
    assert flat.shape == (9,) == (count_parameters(model),)


@given(values=hnp.arrays(np.float32, CNN_PARAMS, elements=st.floats(-1e6, 1e6, width=32)))
def test_set_flat_then_get_flat_returns_the_vector(values: np.ndarray) -> None:
    model = SmallCNN()

    set_flat(model, values)

    assert np.array_equal(get_flat(model), values)


def test_get_flat_then_set_flat_leaves_the_model_as_it_was() -> None:
    model, other = build_model("mnist-cnn", seed=0), build_model("mnist-cnn", seed=5)

    set_flat(other, get_flat(model))

    for (name, p), (_, q) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(p, q), name


def test_set_flat_refuses_a_vector_of_the_wrong_length_naming_both() -> None:
    with pytest.raises(DataError, match=r"has 61 values but LogisticRegression has 62 trainable parameters"):
        set_flat(LogisticRegression(30, 2), np.zeros(61, dtype=np.float32))


def test_set_flat_refuses_a_matrix_and_non_finite_values() -> None:
    model = LogisticRegression(3, 2)
    before = get_flat(model)

    with pytest.raises(DataError, match="one-dimensional"):
        set_flat(model, np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(DataError, match="NaN or infinite"):
        set_flat(model, np.array([0, 0, 0, math.nan, 0, 0, 0, 0], dtype=np.float32))
    assert np.array_equal(get_flat(model), before)


# --- training and evaluation -------------------------------------------------------------------

def test_the_cnn_learns_mnist_from_2000_examples_in_two_epochs(mnist: Dataset) -> None:
    model = build_model("mnist-cnn", seed=0)

    result = train_local(model, mnist.x_train[:2000], mnist.y_train[:2000], epochs=2, batch_size=32, lr=0.05,
                         momentum=0.9, seed=0)
    loss, accuracy = evaluate(model, mnist.x_test, mnist.y_test)

    assert result.samples == 2000 and result.seconds > 0
    assert accuracy > 0.8, accuracy
    assert math.isfinite(loss) and loss < 1.0


def test_logistic_regression_separates_breast_cancer(breast_cancer: Dataset) -> None:
    model = build_model("breast-cancer-logreg", seed=0)

    train_local(model, breast_cancer.x_train, breast_cancer.y_train, epochs=20, batch_size=16, lr=0.05, seed=0)
    _, accuracy = evaluate(model, breast_cancer.x_test, breast_cancer.y_test)

    assert accuracy > 0.9, accuracy


def test_training_is_fixed_by_the_seed_and_restores_global_state(breast_cancer: Dataset) -> None:
    x, y = breast_cancer.x_train, breast_cancer.y_train
    rng_state, threads = torch.get_rng_state(), torch.get_num_threads()
    runs = []
    for seed in (7, 7, 8):
        model = build_model("breast-cancer-logreg", seed=0)
        result = train_local(model, x, y, epochs=2, batch_size=32, lr=0.1, momentum=0.5, seed=seed)
        runs.append((get_flat(model), result.loss))

    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], runs[2][0])
    assert torch.equal(torch.get_rng_state(), rng_state) and torch.get_num_threads() == threads


def test_cnn_training_is_fixed_by_the_seed(mnist: Dataset) -> None:
    x, y = mnist.x_train[:256], mnist.y_train[:256]
    flats = []
    for _ in range(2):
        model = build_model("mnist-cnn", seed=0)
        train_local(model, x, y, epochs=1, batch_size=32, lr=0.05, seed=3)
        flats.append(get_flat(model))

    assert np.array_equal(flats[0], flats[1])


def test_mismatched_or_empty_data_is_refused() -> None:
    model = LogisticRegression(2, 2)

    with pytest.raises(ValueError, match="x has 4 examples but y has shape"):
        train_local(model, np.zeros((4, 2)), np.zeros(3), epochs=1, batch_size=2, lr=0.1, seed=0)
    with pytest.raises(ValueError, match="no examples"):
        evaluate(model, np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match="at least 1"):
        train_local(model, np.zeros((4, 2)), np.zeros(4), epochs=0, batch_size=2, lr=0.1, seed=0)


def test_evaluate_counts_correct_predictions_and_keeps_the_mode() -> None:
    model = LogisticRegression(1, 2)
    set_flat(model, np.array([-1.0, 1.0, 0.0, 0.0], dtype=np.float32))  # class 1 iff x > 0
    model.train()

    loss, accuracy = evaluate(model, np.array([[-2.0], [3.0], [1.0], [-1.0]]), np.array([0, 1, 0, 0]), batch_size=3)

    assert accuracy == 0.75 and loss > 0
    assert model.training
