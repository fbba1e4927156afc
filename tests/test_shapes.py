"""The embedded ``shapes`` dataset: determinism, balance, consistency of labels with the scene."""

from __future__ import annotations

import numpy as np
import pytest

from mtlue.data import PreparedDataset, create_builder
from mtlue.data.shapes import LIGHT, MAX_OBJECTS, SHAPES_TASKS, render_scenes


@pytest.fixture(scope="module")
def scenes():
    return render_scenes(np.random.default_rng(123), 1024, 32)


def test_same_seed_gives_identical_scenes():
    first = render_scenes(np.random.default_rng(7), 64, 32)
    second = render_scenes(np.random.default_rng(7), 64, 32)
    assert np.array_equal(first.images, second.images)
    for name in first.targets:
        assert np.array_equal(first.targets[name], second.targets[name])
    other = render_scenes(np.random.default_rng(8), 64, 32)
    assert not np.array_equal(first.images, other.images)


def test_prepared_dataset_is_byte_identical_across_runs(tmp_path):
    options = dict(train_size=96, test_size=32, image_size=24, crop_size=20, seed=3)
    for name in ("a", "b"):
        create_builder("shapes", **options).prepare(tmp_path / name, tmp_path / "raw")
    first, second = PreparedDataset(tmp_path / "a"), PreparedDataset(tmp_path / "b")
    files = lambda dataset: {path: info["sha256"] for path, info in dataset.manifest["files"].items()}  # noqa: E731
    assert files(first) == files(second)
    assert first.manifest["splits"] == second.manifest["splits"]


def test_test_split_does_not_depend_on_train_size(tmp_path):
    create_builder("shapes", train_size=40, test_size=16).prepare(tmp_path / "a", tmp_path / "raw")
    create_builder("shapes", train_size=80, test_size=16).prepare(tmp_path / "b", tmp_path / "raw")
    a, b = PreparedDataset(tmp_path / "a").split("test"), PreparedDataset(tmp_path / "b").split("test")
    assert np.array_equal(a.images, b.images)


def test_classification_tasks_are_balanced(scenes):
    for task in SHAPES_TASKS:
        if task.is_dense:
            continue
        shares = np.bincount(scenes.targets[task.name], minlength=task.num_classes) / len(scenes.images)
        if task.kind.value == "binary":
            assert 0.3 <= shares[1] <= 0.7, (task.name, shares)
        else:
            assert shares.min() >= 0.5 / task.num_classes, (task.name, shares)


def test_dense_maps_are_consistent_with_the_scene(scenes):
    segmentation = scenes.targets["segmentation"]
    depth = scenes.targets["depth"].astype(np.float32)
    normal = scenes.targets["normal"].astype(np.float32)
    # Unit normals facing the camera everywhere.
    assert np.allclose(np.linalg.norm(normal, axis=1), 1.0, atol=2e-3)
    assert (normal[:, 2] > 0).all()
    # Objects stand in front of the background plane and the depth is physically plausible.
    objects = segmentation > 0
    assert depth[objects].max() < depth[~objects].min()
    assert depth.min() > 0
    # Every image has at least one object, and the binary presence labels match the masks.
    assert objects.reshape(len(objects), -1).any(axis=1).all()
    for index, name in enumerate(("has_circle", "has_square", "has_triangle"), start=1):
        present = (segmentation == index).reshape(len(segmentation), -1).sum(axis=1)
        # A shape counts as present once it shows a few pixels; none without any pixel.
        assert not (scenes.targets[name].astype(bool) & (present == 0)).any()
        assert not (~scenes.targets[name].astype(bool) & (present >= 8)).any()
    # The largest visible object's shape is the most frequent foreground class of the image.
    foreground = np.stack([(segmentation == k).reshape(len(segmentation), -1).sum(1) for k in (1, 2, 3)], 1)
    single_kind = (foreground > 0).sum(axis=1) == 1
    assert np.array_equal(
        foreground[single_kind].argmax(axis=1), scenes.targets["largest_shape"][single_kind]
    )
    assert scenes.targets["count"].max() == MAX_OBJECTS - 1


def test_shading_follows_the_normals(scenes):
    """Brightness of flat, unstriped background pixels rises with the lit side of the normal."""
    segmentation = scenes.targets["segmentation"]
    lambert = np.einsum("nchw,c->nhw", scenes.targets["normal"].astype(np.float32), LIGHT)
    luminance = scenes.images.astype(np.float32).mean(axis=1)
    objects = segmentation > 0
    correlation = np.corrcoef(lambert[objects], luminance[objects])[0, 1]
    assert correlation > 0.2


def test_labels_are_not_predictable_from_global_colour_or_one_pixel(scenes):
    """No task is learnable from the mean colour or from a single pixel (nearest-centroid probe).

    One weak cue is physical and stays: the bigger the largest object, the more of the image
    its (shaded, hence darker) surface covers, so the mean colour tells ``largest_size`` a little
    (about 10 points over the majority class; the victims reach 30 points over it)."""
    images = scenes.images.astype(np.float32) / 255
    features = {
        "mean colour": images.mean(axis=(2, 3)),
        "centre pixel": images[:, :, 16, 16],
    }
    half = len(images) // 2
    for task in SHAPES_TASKS:
        if task.is_dense:
            continue
        labels = scenes.targets[task.name]
        majority = np.bincount(labels[half:], minlength=task.num_classes).max() / (len(labels) - half)
        for name, feature in features.items():
            centroids = np.stack([
                feature[:half][labels[:half] == c].mean(axis=0) if (labels[:half] == c).any() else np.full(3, np.inf)
                for c in range(task.num_classes)
            ])
            predicted = np.linalg.norm(feature[half:, None] - centroids[None], axis=2).argmin(axis=1)
            accuracy = (predicted == labels[half:]).mean()
            margin = 0.14 if task.name == "largest_size" and name == "mean colour" else 0.08
            assert accuracy < majority + margin, (task.name, name, accuracy, majority)


def test_classification_only_variant_drops_dense_tasks(tmp_path):
    create_builder("shapes", train_size=8, test_size=4, dense_tasks=False).prepare(tmp_path / "d", tmp_path / "raw")
    dataset = PreparedDataset(tmp_path / "d")
    assert not any(task.is_dense for task in dataset.tasks)
    assert len(dataset.tasks) == 9


@pytest.mark.parametrize(
    "options, message",
    [
        ({"image_size": 8}, "image_size"),
        ({"crop_size": 40}, "crop_size"),
        ({"train_size": 0}, "train_size"),
        ({"size": 3}, "has no option\\(s\\) size; valid: "),
    ],
)
def test_bad_options_name_the_problem(options, message):
    from mtlue.data import DatasetError

    with pytest.raises(DatasetError, match=message):
        create_builder("shapes", **options)


def test_classification_labels_survive_a_horizontal_flip():
    """The victims' standard augmentation flips images without touching class labels, so no
    task may depend on left versus right."""
    from mtlue.data.shapes import _classification_labels, _sample_scene_parameters

    rng = np.random.default_rng(5)
    count, size = 256, 32
    parameters = _sample_scene_parameters(rng, count)
    front = rng.integers(0, MAX_OBJECTS, (count, size, size))
    covered = rng.random((count, size, size)) < 0.2
    labels = _classification_labels(parameters, front, covered, size)
    flipped = _classification_labels(parameters, front[:, :, ::-1], covered[:, :, ::-1], size)
    for name in labels:
        assert np.array_equal(labels[name], flipped[name]), name


def _object_pixels(count: int, seed: int, size: int = 32):
    """Every object's full pixel count and its visible pixels (after the z-buffer)."""
    from mtlue.data.shapes import (
        _object_geometry,
        _object_masks,
        _object_offsets,
        _sample_scene_parameters,
        _visible_pixels,
        _pixel_centres,
    )

    parameters = _sample_scene_parameters(np.random.default_rng(seed), count)
    dx, dy = _object_offsets(parameters, _pixel_centres(size))
    masks = _object_masks(parameters, dx, dy)
    depth, _ = _object_geometry(parameters, dx, dy)
    front = np.where(masks, depth, np.inf).argmin(axis=1)
    return parameters, masks.sum(axis=(2, 3)), _visible_pixels(front, masks.any(axis=1))


def test_objects_do_not_hide_each_other():
    """One object per quadrant: what a label counts is in the image, not behind a nearer object."""
    parameters, full, visible = _object_pixels(2048, seed=11)
    active = parameters["active"]
    kept = visible[active] / full[active]
    assert (kept >= 0.8).mean() >= 0.99, np.quantile(kept, [0.01, 0.05])
    # Large enough to read the outline: every object covers at least 32 pixels of a 32 px image.
    assert full[active].min() >= 32


def test_objects_stand_out_from_the_background():
    from mtlue.data.shapes import _sample_scene_parameters

    parameters = _sample_scene_parameters(np.random.default_rng(12), 4096)
    distance = np.abs(parameters["colour"] - parameters["background_colour"][:, None]).mean(axis=-1)
    assert (distance[parameters["active"]] < 0.1).mean() < 0.01
    colours = parameters["colour"][parameters["active"]]
    assert colours.min() >= 0.15 and colours.max() <= 1.0


def test_apparent_size_tells_the_depth():
    """Equal physical sizes: a sphere's area on screen is the perspective projection of its size."""
    from mtlue.data.shapes import OBJECT_RADIUS

    size = 32
    parameters, full, _ = _object_pixels(512, seed=13, size=size)
    spheres = (parameters["kind"] == 0) & parameters["active"]
    projected = np.pi * (OBJECT_RADIUS / parameters["depth"][spheres] * size) ** 2
    assert np.abs(full[spheres] / projected - 1).max() < 0.2  # the pixel grid's rounding only
    assert np.corrcoef(full[spheres], 1 / parameters["depth"][spheres] ** 2)[0, 1] > 0.97
