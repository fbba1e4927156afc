"""Tests of the multi-task weighting strategies (victims.weighting).

Two test problems:

* ``TinyMultiTaskNet``: a shared MLP trunk and three heads (two regressions on different scales,
  one binary classification), for training behaviour, head gradients and checkpoints;
* ``aggregate``: a linear probe whose task losses are L_k = g_k . theta + b_k, so the Jacobian of
  the shared parameter theta is exactly a chosen matrix G; it checks each strategy's update rule
  against the property its paper states, on matrices drawn by hypothesis.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import Tensor, nn

from victims.weighting import (
    BUILTIN,
    GradientAggregation,
    Weighting,
    WeightingError,
    create_weighting,
    list_weightings,
    register_weighting,
    weighting_class,
    weighting_description,
    weighting_family,
)

REQUIRED = {
    "ew", "uw", "dwa", "rlw", "gls", "gradnorm",
    "pcgrad", "mgda", "cagrad", "imtl", "graddrop", "gradvac", "aligned_mtl", "fairgrad",
    "nash_mtl", "upgrad",
}  # fmt: skip
#: Strategies whose returned weights are placeholders, not coefficients of the task gradients.
UNWEIGHTED = {"graddrop"}

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)


def make(name: str, num_tasks: int, **hyperparameters) -> Weighting:
    return create_weighting(name, num_tasks, **hyperparameters)


def is_aggregation(name: str) -> bool:
    return issubclass(weighting_class(name), GradientAggregation)


# --- a small multi-task network ----------------------------------------------------------------


class TinyMultiTaskNet(nn.Module):
    NUM_TASKS = 3

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(16, 1) for _ in range(self.NUM_TASKS))
        self.inputs = torch.randn(64, 6)
        teachers = torch.randn(6, self.NUM_TASKS)
        targets = torch.tanh(self.inputs @ teachers)
        # Different scales, so that the strategies have something to balance.
        self.targets = [targets[:, 0:1], 10 * targets[:, 1:2], (targets[:, 2:3] > 0).float()]

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def losses_and_features(self) -> tuple[Tensor, Tensor]:
        features = self.trunk(self.inputs)
        outputs = [head(features) for head in self.heads]
        losses = torch.stack(
            [
                nn.functional.mse_loss(outputs[0], self.targets[0]),
                nn.functional.mse_loss(outputs[1], self.targets[1]),
                nn.functional.binary_cross_entropy_with_logits(outputs[2], self.targets[2]),
            ]
        )
        return losses, features

    def step(self, weighting: Weighting) -> tuple[Tensor, Tensor]:
        """One backward of ``weighting`` (gradients accumulate); returns (losses, weights)."""
        losses, features = self.losses_and_features()
        weights = weighting.backward(losses, self.shared_parameters(), features)
        return losses.detach(), weights


def train(name: str, steps: int = 60, steps_per_epoch: int = 10) -> tuple[Tensor, Tensor]:
    """Initial and final task losses after training with ``name``; checks every step's output."""
    torch.manual_seed(0)
    net = TinyMultiTaskNet()
    weighting = make(name, net.NUM_TASKS)
    optimizer = torch.optim.Adam([*net.parameters(), *weighting.parameters()], lr=1e-2)
    initial, epoch_losses = None, []
    for step in range(steps):
        optimizer.zero_grad()
        losses, weights = net.step(weighting)
        initial = losses if initial is None else initial
        assert weights.shape == (net.NUM_TASKS,) and torch.isfinite(weights).all()
        for parameter in itertools.chain(net.parameters(), weighting.parameters()):
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
        optimizer.step()
        epoch_losses.append(losses)
        if (step + 1) % steps_per_epoch == 0:
            weighting.epoch_end(torch.stack(epoch_losses).mean(0))
            epoch_losses = []
    with torch.no_grad():
        final, _ = net.losses_and_features()
    assert initial is not None
    return initial, final


# --- the linear probe --------------------------------------------------------------------------


def aggregate(
    name: str, gradients: np.ndarray | Tensor, offsets: Tensor | None = None, **hyperparameters
) -> tuple[Tensor, Tensor, Weighting]:
    """(shared update, returned weights, strategy) for task gradients ``gradients`` (K x P)."""
    jacobian = torch.as_tensor(gradients, dtype=torch.float64)
    num_tasks, dimension = jacobian.shape
    theta = nn.Parameter(torch.zeros(dimension, dtype=torch.float64))
    features = theta * 1.0  # the shared representation: a function of theta, not theta itself
    bias = torch.ones(num_tasks, dtype=torch.float64) if offsets is None else offsets
    losses = jacobian @ features + bias
    weighting = make(name, num_tasks, **hyperparameters)
    weights = weighting.backward(losses, [theta], features)
    assert theta.grad is not None
    return theta.grad, weights, weighting


entries = st.one_of(st.just(0.0), st.floats(1e-3, 10.0), st.floats(-10.0, -1e-3))


@st.composite
def task_gradients(draw, min_tasks: int = 2, max_tasks: int = 4, elements=entries) -> np.ndarray:
    num_tasks = draw(st.integers(min_tasks, max_tasks))
    dimension = draw(st.integers(num_tasks, 6))
    return draw(arrays(np.float64, (num_tasks, dimension), elements=elements))


def well_conditioned(gradients: np.ndarray) -> bool:
    """Rows linearly independent with margin (the properties below need a full-rank Jacobian)."""
    norms = np.linalg.norm(gradients, axis=1, keepdims=True)
    if norms.min() < 1e-2:
        return False
    singular_values = np.linalg.svd(gradients / norms, compute_uv=False)
    return singular_values.min() > 0.2


def inner_products(gradients: np.ndarray, update: Tensor) -> np.ndarray:
    return gradients @ update.numpy()


# --- registry and configuration ----------------------------------------------------------------


def test_registry_holds_every_required_strategy():
    assert set(list_weightings()) >= REQUIRED


def imported_after(code: str) -> dict[str, bool]:
    """Which of torch, torchjd, cvxpy and the strategy modules a fresh interpreter holds after ``code``."""
    root = Path(__file__).resolve().parents[1]
    probe = code + (
        "\nimport json, sys\n"
        "print(json.dumps({name: name in sys.modules for name in "
        "['torch', 'torchjd', 'cvxpy', 'victims.weighting.ew', 'victims.weighting.pcgrad', 'victims.weighting.aggregation']}))"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_importing_and_listing_imports_no_strategy_nor_torch():
    found = imported_after(
        "import victims.weighting as w\n"
        "names = w.list_weightings(); [w.weighting_description(n) for n in names]; w.weighting_family('pcgrad')"
    )
    assert not any(found.values()), found


def test_a_loss_scaling_strategy_never_imports_torchjd():
    found = imported_after("from victims.weighting import create_weighting\ncreate_weighting('ew', 3)")
    assert found["torch"] and found["victims.weighting.ew"]
    assert not found["torchjd"] and not found["cvxpy"] and not found["victims.weighting.pcgrad"]
    assert imported_after("from victims.weighting import create_weighting\ncreate_weighting('pcgrad', 3)")["torchjd"]


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_the_builtin_table_agrees_with_each_strategy(name):
    cls = weighting_class(name)
    assert cls.__module__ == BUILTIN[name].module and cls.family == BUILTIN[name].family == weighting_family(name)
    module_summary = sys.modules[cls.__module__].__doc__.strip().splitlines()[0]
    assert weighting_description(name) == f"{module_summary} [{cls.family}]"


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError) as error:
        create_weighting("nashmtl", 3)
    for name in list_weightings():
        assert name in str(error.value)


def test_unknown_hyperparameter_is_named_with_the_valid_ones():
    with pytest.raises(WeightingError, match=r"no hyperparameter\(s\) temp; valid: temperature"):
        create_weighting("dwa", 3, temp=1.0)


@pytest.mark.parametrize(
    ("name", "hyperparameters", "named"),
    [
        ("dwa", {"temperature": 0.0}, "'temperature'"),
        ("gradnorm", {"alpha": -1.0}, "'alpha'"),
        ("cagrad", {"c": -0.1}, "'c'"),
        ("cagrad", {"rescale": 3}, "'rescale'"),
        ("graddrop", {"leak": 1.5}, "'leak'"),
        ("gradvac", {"beta": 2.0}, "'beta'"),
        ("nash_mtl", {"optim_niter": 0}, "'optim_niter'"),
        ("fairgrad", {"alpha": 0.0}, "'alpha'"),
        ("aligned_mtl", {"scale_mode": "max"}, "'scale_mode'"),
        ("rlw", {"seed": -1}, "'seed'"),
        ("upgrad", {"parallel_chunk_size": 0}, "'parallel_chunk_size'"),
    ],
)
def test_bad_hyperparameter_value_is_named(name, hyperparameters, named):
    with pytest.raises(WeightingError, match=named):
        create_weighting(name, 3, **hyperparameters)


@pytest.mark.parametrize("num_tasks", [0, -2, 2.5, True])
def test_bad_number_of_tasks_is_rejected(num_tasks):
    with pytest.raises(WeightingError, match="num_tasks"):
        create_weighting("ew", num_tasks)


def test_losses_of_the_wrong_shape_are_rejected():
    net = TinyMultiTaskNet()
    losses, features = net.losses_and_features()
    with pytest.raises(WeightingError, match="3 task losses"):
        create_weighting("upgrad", 3).backward(losses[:2], net.shared_parameters(), features)


def test_registering_another_class_under_a_taken_name_fails():
    with pytest.raises(ValueError, match="registered twice"):

        @register_weighting("ew")
        class Impostor(Weighting):
            def backward(self, losses, shared_parameters, features):
                return losses


@pytest.mark.parametrize("name", sorted(list_weightings()))
def test_repr_shows_every_hyperparameter(name):
    weighting = make(name, 3)
    text = repr(weighting)
    assert "num_tasks=3" in text
    for hyperparameter in weighting.hyperparameter_names():
        assert f"{hyperparameter}=" in text


# --- training behaviour ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(list_weightings()))
def test_every_strategy_trains_every_task(name):
    initial, final = train(name)
    assert (final < initial).all(), f"{name}: {initial.tolist()} -> {final.tolist()}"


@pytest.mark.parametrize("name", sorted(list_weightings()))
def test_heads_get_their_own_task_gradient(name):
    """Aggregation: exactly the head's own task gradient; loss scaling: times w_k / K."""
    net = TinyMultiTaskNet()
    weighting = make(name, net.NUM_TASKS)
    losses, features = net.losses_and_features()
    expected = [
        torch.autograd.grad(losses[k], list(head.parameters()), retain_graph=True)
        for k, head in enumerate(net.heads)
    ]
    weights = weighting.backward(losses, net.shared_parameters(), features)
    for k, head in enumerate(net.heads):
        scale = 1.0 if is_aggregation(name) else weights[k].item() / net.NUM_TASKS
        for parameter, gradient in zip(head.parameters(), expected[k], strict=True):
            torch.testing.assert_close(parameter.grad, scale * gradient, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(set(list_weightings()) - UNWEIGHTED))
def test_returned_weights_are_the_ones_applied(name):
    """The shared update is (1/K) sum_k w_k g_k with the returned w (the module convention)."""
    generator = torch.Generator().manual_seed(3)
    gradients = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    offsets = 1.0 + torch.rand(3, generator=generator, dtype=torch.float64)
    update, weights, _ = aggregate(name, gradients, offsets)
    torch.testing.assert_close(update, weights @ gradients / 3, rtol=1e-6, atol=1e-9)


def test_parallel_chunk_size_only_changes_the_schedule():
    updates = []
    for chunk_size in (3, 1):
        net = TinyMultiTaskNet()
        net.step(create_weighting("upgrad", 3, parallel_chunk_size=chunk_size))
        updates.append([parameter.grad for parameter in net.shared_parameters()])
    for together, one_by_one in zip(*updates, strict=True):
        torch.testing.assert_close(together, one_by_one)


def test_several_feature_tensors_are_chained_through_the_encoder():
    """Heads that read two shared tensors: the Jacobian of theta is still exactly G."""
    gradients = torch.tensor([[1.0, 2.0, 0.0, 1.0], [0.5, 0.0, 3.0, 1.0]], dtype=torch.float64)
    theta = nn.Parameter(torch.zeros(4, dtype=torch.float64))
    features = [theta[:2] * 1.0, theta[2:] * 1.0]
    losses = gradients[:, :2] @ features[0] + gradients[:, 2:] @ features[1]
    create_weighting("pcgrad", 2).backward(losses, [theta], features)
    torch.testing.assert_close(theta.grad, gradients.sum(0))  # no conflict: PCGrad sums


@pytest.mark.parametrize("name", ["upgrad", "gradnorm"])
def test_frozen_shared_parameters_are_left_alone(name):
    net = TinyMultiTaskNet()
    frozen = net.trunk[0].weight
    frozen.requires_grad_(False)
    net.step(create_weighting(name, 3))
    assert frozen.grad is None
    assert all(parameter.grad is not None for parameter in net.trunk[2].parameters())


def test_a_shared_parameter_that_bypasses_the_features_is_reported():
    net = TinyMultiTaskNet()
    features = net.trunk(net.inputs)
    first_layer_bias = net.trunk[0].bias
    losses = torch.stack([net.heads[k](features).mean() + first_layer_bias.sum() for k in range(3)])
    with pytest.raises(WeightingError, match="without going through the features"):
        create_weighting("upgrad", 3).backward(losses, net.shared_parameters(), features)


# --- loss scaling ------------------------------------------------------------------------------


@given(gradients=task_gradients())
@PROPERTY_SETTINGS
def test_ew_is_the_mean_task_gradient(gradients):
    update, weights, _ = aggregate("ew", gradients)
    np.testing.assert_allclose(update.numpy(), gradients.mean(axis=0), rtol=1e-12, atol=1e-12)
    assert (weights == 1).all()


def test_uw_at_zero_log_variance_is_half_the_sum():
    gradients = torch.tensor([[1.0, -2.0], [3.0, 0.5], [0.0, 1.0]], dtype=torch.float64)
    offsets = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    update, _, weighting = aggregate("uw", gradients, offsets, initial_log_variance=0.0)
    torch.testing.assert_close(update, 0.5 * gradients.sum(0))
    # d/ds_k [L_k / (2 exp(s_k)) + s_k / 2] at s = 0 is (1 - L_k) / 2.
    torch.testing.assert_close(
        weighting.log_variances.grad, (0.5 * (1 - offsets)).float(), rtol=1e-6, atol=1e-7
    )


def test_uw_starts_from_the_release_log_variance():
    assert (create_weighting("uw", 4).log_variances == -0.5).all()


@given(
    gradients=task_gradients(),
    offsets=arrays(np.float64, 4, elements=st.floats(0.1, 10.0)),
)
@PROPERTY_SETTINGS
def test_gls_follows_the_geometric_mean(gradients, offsets):
    losses = torch.as_tensor(offsets[: len(gradients)])
    update, _, _ = aggregate("gls", gradients, losses)
    theta = torch.zeros(gradients.shape[1], dtype=torch.float64, requires_grad=True)
    task_losses = torch.as_tensor(gradients) @ theta + losses
    (expected,) = torch.autograd.grad(task_losses.prod() ** (1 / len(losses)), theta)
    torch.testing.assert_close(update, expected)


def test_rlw_is_reproducible_and_its_weights_sum_to_the_number_of_tasks():
    gradients = torch.randn(4, 3, dtype=torch.float64)

    def weight_sequence(seed: int) -> list[Tensor]:
        weighting = create_weighting("rlw", 4, seed=seed)
        sequence = []
        for _ in range(5):
            theta = nn.Parameter(torch.zeros(3, dtype=torch.float64))
            features = theta * 1.0
            sequence.append(weighting.backward(gradients @ features + 1, [theta], features))
            torch.testing.assert_close(theta.grad, sequence[-1] @ gradients / 4)
        return sequence

    first, again, other = weight_sequence(7), weight_sequence(7), weight_sequence(8)
    for weights, repeated in zip(first, again, strict=True):
        torch.testing.assert_close(weights, repeated, rtol=0, atol=0)
        assert weights.sum().item() == pytest.approx(4.0)
        assert (weights > 0).all()
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    logits = torch.randn(4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(first[0], 4 * torch.softmax(logits, dim=0))


def test_dwa_weights_follow_the_loss_descent_rates_and_sum_to_the_number_of_tasks():
    gradients = torch.eye(3, dtype=torch.float64)
    dwa = create_weighting("dwa", 3, temperature=2.0)

    def current_weights() -> Tensor:
        theta = nn.Parameter(torch.zeros(3, dtype=torch.float64))
        features = theta * 1.0
        weights = dwa.backward(gradients @ features + 1, [theta], features)
        torch.testing.assert_close(theta.grad, weights @ gradients / 3)
        return weights

    assert torch.equal(current_weights(), torch.ones(3, dtype=torch.float64))
    dwa.epoch_end(torch.tensor([2.0, 1.0, 4.0]))
    assert torch.equal(current_weights(), torch.ones(3, dtype=torch.float64))  # one epoch seen
    dwa.epoch_end(torch.tensor([1.0, 1.0, 3.0]))
    expected = 3 * torch.softmax(torch.tensor([0.5, 1.0, 0.75], dtype=torch.float64) / 2, dim=0)
    weights = current_weights()
    torch.testing.assert_close(weights, expected)
    assert weights.sum().item() == pytest.approx(3.0)
    assert weights[0] < weights[2] < weights[1]  # the task that improved least gets the most
    with pytest.raises(WeightingError, match="3 mean task losses"):
        dwa.epoch_end(torch.ones(2))


def test_gradnorm_weights_stay_positive_sum_to_k_and_shrink_the_dominant_task():
    """Two copies of one regression task, one with its loss scaled by 10: its gradient norm is
    10x larger at the same training rate, so GradNorm must move weight away from it."""
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
    heads = nn.ModuleList(nn.Linear(8, 1) for _ in range(2))
    inputs, targets = torch.randn(32, 4), torch.randn(32, 1)
    gradnorm = create_weighting("gradnorm", 2, alpha=1.5)
    optimizer = torch.optim.Adam([*trunk.parameters(), *heads.parameters()], lr=1e-3)
    weight_optimizer = torch.optim.Adam(gradnorm.parameters(), lr=5e-2)
    for step in range(40):
        optimizer.zero_grad()
        weight_optimizer.zero_grad()
        features = trunk(inputs)
        losses = torch.stack(
            [
                scale * nn.functional.mse_loss(h(features), targets)
                for scale, h in zip((1, 10), heads, strict=True)
            ]
        )
        weights = gradnorm.backward(losses, list(trunk.parameters()), features)
        if step == 0:
            torch.testing.assert_close(gradnorm.initial_losses, losses.detach())
        assert (weights > 0).all() and weights.sum().item() == pytest.approx(2.0)
        assert gradnorm.weight_logits.grad is not None
        optimizer.step()
        weight_optimizer.step()
    assert weights[1] < 0.5 < weights[0]


# --- gradient aggregation ----------------------------------------------------------------------


@given(gradients=task_gradients(elements=st.floats(0.0, 10.0)))
@PROPERTY_SETTINGS
def test_pcgrad_sums_gradients_that_do_not_conflict(gradients):
    update, _, _ = aggregate("pcgrad", gradients)
    np.testing.assert_allclose(update.numpy(), gradients.sum(axis=0), rtol=1e-10, atol=1e-10)


@given(gradients=task_gradients(min_tasks=2, max_tasks=2))
@PROPERTY_SETTINGS
def test_mgda_two_tasks_is_the_closed_form_min_norm_point(gradients):
    first, second = gradients
    difference = first - second
    squared = difference @ difference
    share = 0.5 if squared == 0 else np.clip((second - first) @ second / squared, 0.0, 1.0)
    expected = share * first + (1 - share) * second
    update, weights, _ = aggregate("mgda", gradients)
    assert weights.sum().item() == pytest.approx(2.0)
    # For d in the hull, ||d - d*||^2 <= ||d||^2 - ||d*||^2, which the solver's regularisation
    # (1e-9 trace(G) on the Gramian) bounds by 1e-9 trace(G).
    trace = (gradients**2).sum()
    assert np.linalg.norm(update.numpy() - expected) <= np.sqrt(2e-9 * trace) + 1e-12


@given(gradients=task_gradients(min_tasks=3, max_tasks=4))
@PROPERTY_SETTINGS
def test_mgda_satisfies_the_min_norm_optimality_conditions(gradients):
    """a on the simplex minimises ||G^T a||^2 iff g_k . d >= ||d||^2 for every k, with equality
    wherever a_k > 0 (d = G^T a); the solver's regularisation moves both by <= 1e-9 trace(G)."""
    update, weights, _ = aggregate("mgda", gradients)
    shares = weights.numpy() / len(gradients)
    assert shares.min() >= 0 and shares.sum() == pytest.approx(1.0)
    tolerance = 1e-8 * (gradients**2).sum() + 1e-12
    margins = inner_products(gradients, update) - update.numpy() @ update.numpy()
    assert margins.min() >= -tolerance
    assert np.abs(margins[shares > 1e-4]).max(initial=0.0) <= tolerance


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
@given(gradients=task_gradients())
@PROPERTY_SETTINGS
def test_dual_cone_projections_conflict_with_no_task(name, gradients):
    """g_k . d >= 0, up to torchjd's projector regularisation: it solves with G / trace(G) + 1e-4 I,
    whose optimality conditions give g_k . d >= -1e-4 trace(G) a_k (d = sum_k a_k g_k)."""
    update, weights, _ = aggregate(name, gradients)
    shares = weights.numpy() / len(gradients)
    slack = 1e-4 * np.trace(gradients @ gradients.T) * np.abs(shares)
    assert (inner_products(gradients, update) >= -slack * (1 + 1e-6) - 1e-12).all()


@given(gradients=task_gradients())
@PROPERTY_SETTINGS
def test_aligned_mtl_does_not_oppose_the_average_gradient(gradients):
    update, _, _ = aggregate("aligned_mtl", gradients)
    average = gradients.mean(axis=0)
    assert average @ update.numpy() >= -1e-9 * np.linalg.norm(average) * np.linalg.norm(update)


@given(gradients=task_gradients(), c=st.sampled_from([0.2, 0.4, 0.8]))
@PROPERTY_SETTINGS
def test_cagrad_stays_in_its_ball_and_does_not_oppose_the_average(gradients, c):
    update, _, _ = aggregate("cagrad", gradients, c=c, rescale=0)
    average = gradients.mean(axis=0)
    tolerance = 1e-9 * (1 + np.abs(gradients).max() ** 2)
    assert np.linalg.norm(update.numpy() - average) <= c * np.linalg.norm(average) + tolerance
    assert average @ update.numpy() >= (1 - c) * (average @ average) - tolerance


@given(gradients=task_gradients(), c=st.sampled_from([0.2, 0.4, 0.8]))
@PROPERTY_SETTINGS
def test_cagrad_does_at_least_as_well_as_the_average_on_the_worst_task(gradients, c):
    """The average gradient lies in the ball, so the maximiser of the worst task's improvement
    does at least as well. (At Pareto-stationary points the dual solution does not determine the
    update; full-rank gradients exclude them.)"""
    assume(well_conditioned(gradients))
    update, _, _ = aggregate("cagrad", gradients, c=c, rescale=0)
    worst = inner_products(gradients, update).min()
    worst_of_average = (gradients @ gradients.mean(axis=0)).min()
    assert worst >= worst_of_average - 1e-4 * np.abs(gradients).max() ** 2


def test_cagrad_rescale_divides_the_update():
    gradients = np.array([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.5]])
    plain, _, _ = aggregate("cagrad", gradients, rescale=0)
    default, _, _ = aggregate("cagrad", gradients)
    torch.testing.assert_close(default, plain / (1 + 0.4**2))


@given(gradients=task_gradients())
@settings(max_examples=15, deadline=None)
def test_cagrad_agrees_with_torchjds_cvxpy_solver(gradients):
    from torchjd.aggregation import CAGrad

    # Away from Pareto-stationary points, where the two differ on purpose (see cagrad.py).
    assume(well_conditioned(gradients))
    update, _, _ = aggregate("cagrad", gradients, c=0.4, rescale=0)
    reference = CAGrad(c=0.4)(torch.as_tensor(gradients))
    scale = np.abs(gradients).max()
    np.testing.assert_allclose(update.numpy(), reference.numpy(), atol=2e-3 * scale)


@given(gradients=task_gradients())
@PROPERTY_SETTINGS
def test_imtl_projects_equally_onto_every_unit_task_gradient(gradients):
    assume(well_conditioned(gradients))
    update, weights, _ = aggregate("imtl", gradients)
    projections = inner_products(gradients, update) / np.linalg.norm(gradients, axis=1)
    np.testing.assert_allclose(projections, projections[0], rtol=1e-6, atol=1e-9)
    assert weights.sum().item() == pytest.approx(len(gradients))


@given(gradients=task_gradients())
@PROPERTY_SETTINGS
def test_fairgrad_improvement_of_each_task_is_inverse_to_its_weight(gradients):
    """alpha = 1: G G^T w = 1 / w, i.e. g_k . update = 1 / w_k > 0 for every task."""
    assume(well_conditioned(gradients))
    update, weights, _ = aggregate("fairgrad", gradients)
    shares = weights.numpy() / len(gradients)
    improvements = inner_products(gradients, update)
    assert (improvements > 0).all()
    # scipy's least_squares stops at its default tolerances (as in the authors' code).
    np.testing.assert_allclose(improvements, 1 / shares, rtol=1e-2)


@given(gradients=task_gradients())
@PROPERTY_SETTINGS
def test_config_improves_every_task_equally_in_cosine(gradients):
    assume(well_conditioned(gradients))
    update, _, _ = aggregate("config", gradients)
    improvements = inner_products(gradients, update)
    assert (improvements > 0).all()
    cosines = improvements / np.linalg.norm(gradients, axis=1)
    np.testing.assert_allclose(cosines, cosines[0], rtol=1e-6)


@given(gradients=task_gradients())
@PROPERTY_SETTINGS
def test_config_from_the_gramian_matches_torchjds_config(gradients):
    from torchjd.aggregation import ConFIG

    # With linearly dependent unit gradients the direction can be 0/0 (e.g. two opposite tasks),
    # where both implementations only normalise round-off.
    assume(well_conditioned(gradients))
    update, _, _ = aggregate("config", gradients)
    reference = ConFIG()(torch.as_tensor(gradients))
    scale = np.abs(gradients).max()
    torch.testing.assert_close(update, reference, rtol=1e-6, atol=1e-6 * scale)


def test_nash_mtl_solves_the_bargaining_equations():
    """Without clipping, the Nash weights satisfy G G^T a = 1 / a (Navon et al., Eq. 4 ff.)."""
    gradients = np.array([[1.0, 0.2, 0.0], [0.0, 1.0, -0.3], [0.4, 0.0, 2.0]])
    update, weights, _ = aggregate("nash_mtl", gradients, max_norm=0.0)
    shares = weights.numpy() / 3
    np.testing.assert_allclose(inner_products(gradients, update), 1 / shares, rtol=1e-2)


# --- checkpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(list_weightings()))
def test_state_survives_a_checkpoint(name):
    """A strategy restored from a state_dict (through torch.save/torch.load(weights_only=True))
    takes the same next step as the one that kept running."""
    net = TinyMultiTaskNet()
    running = make(name, net.NUM_TASKS)
    optimizer = torch.optim.Adam([*net.parameters(), *running.parameters()], lr=1e-2)
    torch.manual_seed(1)
    for _ in range(3):
        optimizer.zero_grad()
        losses, _ = net.step(running)
        optimizer.step()
        running.epoch_end(losses)

    buffer = io.BytesIO()
    torch.save(running.state_dict(), buffer)
    buffer.seek(0)
    restored = make(name, net.NUM_TASKS)
    restored.load_state_dict(torch.load(buffer, weights_only=True))

    twin = copy.deepcopy(net)
    outcomes = []
    for model, weighting in ((net, running), (twin, restored)):
        model.zero_grad()
        torch.manual_seed(2)  # PCGrad, GradVac and GradDrop draw from the global RNG
        _, weights = model.step(weighting)
        outcomes.append((weights, [parameter.grad for parameter in model.parameters()]))
    (weights, gradients), (restored_weights, restored_gradients) = outcomes
    torch.testing.assert_close(restored_weights, weights)
    for gradient, restored_gradient in zip(gradients, restored_gradients, strict=True):
        torch.testing.assert_close(restored_gradient, gradient)
