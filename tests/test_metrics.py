"""Victim metrics against hand-computed values and scikit-learn, accumulated over batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    jaccard_score,
    roc_auc_score,
)

from mtlue.data.tasks import IGNORE_INDEX, Task, TaskKind
from victims.metrics import (
    ANGLE_BIN_DEGREES,
    MetricError,
    MultiTaskMeter,
    aggregate,
    average_ranks,
    create_meter,
    delta_m,
    roc_auc,
)

BINARY = Task("smiling", TaskKind.BINARY, 2)
BINARY_AUC = Task("effusion", TaskKind.BINARY, 2, metrics=("auc", "accuracy"))
MULTICLASS = Task("age", TaskKind.MULTICLASS, 4)
SEGMENTATION = Task("segmentation", TaskKind.SEGMENTATION, 4)
DEPTH = Task("depth", TaskKind.DEPTH, 1)
NORMAL = Task("normal", TaskKind.NORMAL, 3)
#: The documented resolution of the median angle, plus float32 rounding of the angles.
HALF_BIN = ANGLE_BIN_DEGREES / 2 + 1e-4


def accumulate(task: Task, outputs: torch.Tensor, targets: torch.Tensor, batch: int) -> dict[str, float]:
    meter = create_meter(task)
    for start in range(0, len(targets), batch):
        meter.update(outputs[start : start + batch], targets[start : start + batch])
    return meter.compute()


def test_binary_accuracy_thresholds_logits_at_zero_like_sklearn():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=101)).float()
    labels = torch.from_numpy(rng.integers(0, 2, 101)).to(torch.uint8)
    expected = accuracy_score(labels.numpy(), (logits > 0).numpy()) * 100
    assert accumulate(BINARY, logits, labels, batch=16)["accuracy"] == pytest.approx(expected)
    # A zero logit is a negative prediction (sigmoid 0.5 is not > 0.5).
    assert accumulate(BINARY, torch.tensor([0.0, 0.0]), torch.tensor([0, 1]), batch=2)["accuracy"] == 50.0


def test_multiclass_accuracy_is_argmax_like_sklearn():
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(size=(57, 4))).float()
    labels = torch.from_numpy(rng.integers(0, 4, 57))
    expected = accuracy_score(labels.numpy(), logits.argmax(1).numpy()) * 100
    assert accumulate(MULTICLASS, logits, labels, batch=10)["accuracy"] == pytest.approx(expected)


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    scores = rng.integers(-3, 4, 200).astype(np.float32)  # many ties
    labels = rng.integers(0, 2, 200)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    values = accumulate(BINARY_AUC, torch.from_numpy(scores), torch.from_numpy(labels), batch=33)
    assert list(values) == ["accuracy", "auc"]
    assert values["auc"] == pytest.approx(100 * roc_auc_score(labels, scores))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=50))
def test_average_ranks_match_scipy_on_tied_values(values):
    from scipy.stats import rankdata

    array = np.asarray(values, dtype=np.float64)
    np.testing.assert_allclose(average_ranks(array), rankdata(array, method="average"))


def test_auc_by_hand():
    # Pairs (positive, negative): (0.8 > 0.1), (0.8 > 0.4), (0.4 = 0.4 -> 1/2), (0.4 > 0.1): 3.5 / 4.
    assert roc_auc(np.array([0.8, 0.4, 0.4, 0.1]), np.array([1, 1, 0, 0])) == 0.875


def test_auc_with_a_single_class_is_an_error_naming_the_task():
    with pytest.raises(MetricError, match="'effusion'.*both classes.*3 positive and 0 negative"):
        accumulate(BINARY_AUC, torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1, 1, 1]), batch=3)


def test_auc_on_a_multiclass_task_is_refused():
    with pytest.raises(MetricError, match="multiclass tasks support accuracy"):
        create_meter(Task("age", TaskKind.MULTICLASS, 4, metrics=("auc",)))


def segmentation_case():
    """Batch 1 only has classes 0/1, batch 2 only 2/3: per-batch averaging would differ."""
    target = torch.tensor(
        [
            [[0, 0, 1, 1], [0, 0, 1, IGNORE_INDEX]],
            [[2, 2, 3, 3], [2, 2, 3, 3]],
        ]
    )
    prediction = torch.tensor(
        [
            [[0, 1, 1, 1], [0, 0, 1, 3]],
            [[2, 3, 3, 3], [2, 2, 2, 3]],
        ]
    )
    logits = torch.nn.functional.one_hot(prediction, 4).permute(0, 3, 1, 2).float()
    return logits, target, prediction


def test_miou_and_pixel_accuracy_by_hand_and_against_sklearn():
    logits, target, prediction = segmentation_case()
    values = accumulate(SEGMENTATION, logits, target, batch=1)
    valid = target != IGNORE_INDEX
    y_true, y_pred = target[valid].numpy(), prediction[valid].numpy()
    assert values["pixel_accuracy"] == pytest.approx(100 * accuracy_score(y_true, y_pred))
    assert values["miou"] == pytest.approx(100 * jaccard_score(y_true, y_pred, average=None, labels=[0, 1, 2, 3]).mean())
    # By hand over the 15 valid pixels: IoU = 3/4, 3/4, 3/5, 3/5 (the ignored pixel's wrong 3 does not count).
    assert values["miou"] == pytest.approx(100 * (0.75 + 0.75 + 0.6 + 0.6) / 4)
    assert values["pixel_accuracy"] == pytest.approx(100 * 12 / 15)
    meter = create_meter(SEGMENTATION)
    meter.update(logits, target)
    assert np.array_equal(meter.confusion.numpy(), confusion_matrix(y_true, y_pred, labels=[0, 1, 2, 3]))


def test_miou_skips_classes_absent_from_target_and_prediction():
    task = Task("segmentation", TaskKind.SEGMENTATION, 5)
    target = torch.tensor([[[0, 0, 1, 1]]])
    logits = torch.nn.functional.one_hot(torch.tensor([[[0, 1, 1, 1]]]), 5).permute(0, 3, 1, 2).float()
    # Classes 2-4 appear nowhere: mean over {0: 1/2, 1: 2/3} only.
    assert accumulate(task, logits, target, batch=1)["miou"] == pytest.approx(100 * (0.5 + 2 / 3) / 2)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 7), st.integers(0, 2**31 - 1))
def test_segmentation_result_does_not_depend_on_batching(batch, seed):
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 4, (7, 3, 5), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.2] = IGNORE_INDEX
    logits = torch.randn(7, 4, 3, 5, generator=generator)
    assert accumulate(SEGMENTATION, logits, target, batch=batch) == accumulate(SEGMENTATION, logits, target, batch=7)


def test_depth_errors_over_valid_pixels_of_the_whole_set():
    target = torch.tensor([[[1.0, 2.0], [0.0, 4.0]], [[2.0, 0.0], [0.0, 0.0]]]).half()
    prediction = torch.tensor([[[1.5, 1.0], [9.0, 4.0]], [[3.0, 7.0], [7.0, 7.0]]])
    values = accumulate(DEPTH, prediction, target, batch=1)
    # Valid pixels: |0.5|/1, |1|/2, 0/4, |1|/2 -> abs (0.5 + 1 + 0 + 1) / 4, rel (0.5 + 0.5 + 0 + 0.5) / 4.
    assert values == {"abs_err": pytest.approx(2.5 / 4), "rel_err": pytest.approx(1.5 / 4)}


def normals_at(angles_degrees: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit predictions rotated by the given angles from a +z target, as (1, 3, 1, N) maps."""
    radians = torch.deg2rad(torch.tensor(angles_degrees, dtype=torch.float64))
    prediction = torch.stack([torch.sin(radians), torch.zeros_like(radians), torch.cos(radians)])[None, :, None, :]
    target = torch.zeros_like(prediction)
    target[:, 2] = 1.0
    return prediction.float(), target.half()


def test_normal_angles_by_hand():
    prediction, target = normals_at([0.0, 10.0, 20.0, 25.0, 90.0, 180.0])
    # The prediction's length does not matter; a zero target marks a pixel without a normal.
    prediction = prediction * 3.0
    prediction = torch.cat([prediction, torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)], dim=3)
    target = torch.cat([target, torch.zeros(1, 3, 1, 1).half()], dim=3)
    values = accumulate(NORMAL, prediction, target, batch=1)
    assert values["mean_angle"] == pytest.approx((0 + 10 + 20 + 25 + 90 + 180) / 6, abs=1e-3)
    # The even count's median averages the two middle angles, as numpy does.
    assert values["median_angle"] == pytest.approx(22.5, abs=HALF_BIN)
    assert values["within_11.25"] == pytest.approx(100 * 2 / 6)
    assert values["within_22.5"] == pytest.approx(100 * 3 / 6)
    assert values["within_30"] == pytest.approx(100 * 4 / 6)
    assert list(values) == ["mean_angle", "median_angle", "within_11.25", "within_22.5", "within_30"]


def test_normal_median_is_exact_to_half_a_histogram_bin():
    rng = np.random.default_rng(4)
    angles = rng.uniform(0, 60, 2001)
    prediction, target = normals_at(angles.tolist())
    chunks = [prediction[..., i : i + 500] for i in range(0, 2001, 500)]
    meter = create_meter(NORMAL)
    for chunk, start in zip(chunks, range(0, 2001, 500)):
        meter.update(chunk, target[..., start : start + 500])
    values = meter.compute()
    assert values["median_angle"] == pytest.approx(np.median(angles), abs=HALF_BIN)
    assert values["mean_angle"] == pytest.approx(angles.mean(), abs=1e-3)


def test_multitask_meter_and_aggregate():
    tasks = [BINARY, BINARY_AUC, MULTICLASS, SEGMENTATION, DEPTH]
    meter = MultiTaskMeter(tasks)
    logits, target, _ = segmentation_case()
    meter.update(
        {
            "smiling": torch.tensor([1.0, -1.0]),
            "effusion": torch.tensor([2.0, -2.0]),
            "age": torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]),
            "segmentation": logits,
            "depth": torch.ones(2, 2, 4),
        },
        {
            "smiling": torch.tensor([1, 1]),
            "effusion": torch.tensor([1, 0]),
            "age": torch.tensor([1, 3]),
            "segmentation": target,
            "depth": torch.full((2, 2, 4), 2.0),
        },
    )
    results = meter.compute()
    assert results["smiling"] == {"accuracy": 50.0}
    assert results["effusion"] == {"auc": 100.0, "accuracy": 100.0}
    assert results["depth"] == {"abs_err": 1.0, "rel_err": 0.5}
    summary = aggregate(results, tasks)
    # Headline metrics: accuracy 50, AUC 100, accuracy 50.
    assert summary["classification_mean"] == pytest.approx((50 + 100 + 50) / 3)
    assert summary["mean_accuracy"] == pytest.approx((50 + 100 + 50) / 3)
    assert summary["mean_auc"] == 100.0
    assert summary["segmentation/miou"] == results["segmentation"]["miou"]
    assert summary["depth/abs_err"] == 1.0


def test_delta_m_by_hand():
    tasks = [MULTICLASS, DEPTH]
    clean = {"age": {"accuracy": 80.0}, "depth": {"abs_err": 0.5, "rel_err": 0.2}}
    poisoned = {"age": {"accuracy": 40.0}, "depth": {"abs_err": 1.0, "rel_err": 0.2}}
    # accuracy: (40 - 80) / 80 = -50 %; abs_err (lower is better): -(1.0 - 0.5) / 0.5 = -100 %; rel_err 0.
    assert delta_m(poisoned, clean, tasks) == pytest.approx((-50 - 100 + 0) / 3)
    assert delta_m(clean, clean, tasks) == 0.0
    better = {"age": {"accuracy": 88.0}, "depth": {"abs_err": 0.25, "rel_err": 0.1}}
    assert delta_m(better, clean, tasks) == pytest.approx((10 + 50 + 50) / 3)


def test_delta_m_refuses_a_zero_baseline_and_missing_metrics():
    with pytest.raises(MetricError, match="clean age/accuracy is 0.0"):
        delta_m({"age": {"accuracy": 1.0}}, {"age": {"accuracy": 0.0}}, [MULTICLASS])
    with pytest.raises(MetricError, match="depth/rel_err is missing"):
        delta_m({"depth": {"abs_err": 1.0}}, {"depth": {"abs_err": 1.0}}, [DEPTH])


def test_empty_meters_explain_themselves():
    with pytest.raises(MetricError, match="no samples were evaluated"):
        create_meter(BINARY).compute()
    meter = create_meter(DEPTH)
    meter.update(torch.ones(1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(MetricError, match="no pixel with a depth measurement"):
        meter.compute()
