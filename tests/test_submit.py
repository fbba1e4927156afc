"""Leaderboard submissions: perturbation files checked and stored, installed for the victims, and
code plugins installed as a real package and run through `mtlue poison`."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from mtlue.cli import main
from mtlue.data import PreparedDataset, create_builder
from mtlue.io import file_sha256
from mtlue.poisons import (
    CARD_NAME,
    DELTAS_NAME,
    PoisonError,
    install_submission,
    list_submissions,
    load_store,
    publish,
    read_card,
    submit_file,
    write_store,
)

ROOT = Path(__file__).resolve().parents[1]
EPSILON = 8


def train_shape(dataset):
    return (len(dataset.split("train")), *dataset.image_shape)


def int8_deltas(dataset, seed=0):
    return np.random.default_rng(seed).integers(-EPSILON, EPSILON + 1, train_shape(dataset), dtype=np.int8)


def save(path, **tensors):
    save_file(tensors, str(path))
    return path


def submit(dataset, path, tmp_path, name="my-ue", root="submissions", **options):
    return submit_file(path, dataset=dataset, name=name, out_dir=tmp_path / root / dataset.name / name, **options)


def refused(dataset, path, tmp_path, match, **options):
    with pytest.raises(PoisonError, match=match) as caught:
        submit(dataset, path, tmp_path, root="refused", **options)
    assert not (tmp_path / "refused").exists()  # nothing is written for a refused file
    return str(caught.value)


# --------------------------------------------------------------------------------------------
# accepted files


def test_int8_deltas_become_a_store_that_loads_and_records_the_submission(tiny_shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    deltas = int8_deltas(tiny_shapes)
    path = save(tmp_path / "mine.safetensors", deltas=deltas)
    written = submit(tiny_shapes, path, tmp_path)

    folder = tmp_path / "submissions" / "shapes" / "my-ue"
    assert sorted(item.name for item in folder.iterdir()) == [CARD_NAME, DELTAS_NAME]
    store = load_store(folder, tiny_shapes, max_epsilon=EPSILON)
    assert np.array_equal(store.deltas, deltas) and store.deltas.dtype == np.int8
    card = store.card
    assert card == written.card == read_card(folder)
    assert (card.method, card.hyperparameters, card.epsilon, card.ratio, card.poisoned_indices) == ("my-ue", {}, 8, 1.0, None)
    assert card.split_content_hash == tiny_shapes.split("train").content_hash
    assert card.created == "2026-01-01T00:00:00+00:00"  # the submission date
    record = card.submission
    assert (record.file, record.layout, record.bytes) == ("mine.safetensors", "int8-deltas", path.stat().st_size)
    assert record.sha256 == file_sha256(path)
    assert "submitted as mine.safetensors" in card.describe()
    # Not generated here: no convergence record, said explicitly in the card.
    assert card.convergence is None and json.loads((folder / CARD_NAME).read_text())["convergence"] is None


def test_float_deltas_are_rounded_to_steps_and_the_budget_is_checked_after_rounding(tiny_shapes, tmp_path):
    rng = np.random.default_rng(1)
    steps = rng.integers(-EPSILON, EPSILON + 1, train_shape(tiny_shapes))
    # Up to 0.45 of a step off the grid either way: rounds back to the same steps, 8.45/255 to 8.
    floats = ((steps + rng.uniform(-0.45, 0.45, steps.shape)) / 255).astype(np.float32)
    store = submit(tiny_shapes, save(tmp_path / "float.safetensors", deltas=floats), tmp_path)
    assert np.array_equal(store.deltas, steps.astype(np.int8))
    assert store.card.submission.layout == "float-deltas"

    floats[5, 2, 1, 1] = 8.6 / 255  # rounds to 9: over budget, not clipped back to 8
    message = refused(tiny_shapes, save(tmp_path / "over.safetensors", deltas=floats), tmp_path, "budget of 8/255")
    assert "reach 9/255, the largest in sample 5" in message and "after rounding" in message


def test_poisoned_images_are_turned_into_deltas(tiny_shapes, tmp_path):
    clean = np.asarray(tiny_shapes.split("train").images)
    published = publish(clean, int8_deltas(tiny_shapes, seed=2))
    store = submit(tiny_shapes, save(tmp_path / "images.safetensors", images=published), tmp_path)
    assert store.card.submission.layout == "uint8-images"
    assert np.array_equal(publish(clean, store.deltas), published)
    assert np.array_equal(store.deltas.astype(np.int16), published.astype(np.int16) - clean)


# --------------------------------------------------------------------------------------------
# refused files: one cause each, named with its fix


def test_wrong_sample_count_is_refused(tiny_shapes, tmp_path):
    message = refused(
        tiny_shapes, save(tmp_path / "short.safetensors", deltas=int8_deltas(tiny_shapes)[:-3]), tmp_path,
        "holds 29 samples, the train split of 'shapes' has 32",
    )
    assert "ids.txt" in message


def test_wrong_shape_is_refused(tiny_shapes, tmp_path):
    small = int8_deltas(tiny_shapes)[:, :, :8, :8].copy()
    refused(tiny_shapes, save(tmp_path / "small.safetensors", deltas=small), tmp_path, r"per-sample shape \[3, 8, 8\].*are \[3, 16, 16\]")
    flat = int8_deltas(tiny_shapes).reshape(32, -1)
    refused(tiny_shapes, save(tmp_path / "flat.safetensors", deltas=flat), tmp_path, r"shape \[32, 768\], expected 4 dimensions")


def test_over_budget_names_the_largest_violation_and_its_sample(tiny_shapes, tmp_path):
    deltas = int8_deltas(tiny_shapes)
    deltas[3, 0, 0, 0], deltas[17, 2, 5, 5], deltas[17, 1, 0, 0] = 10, -13, 9
    message = refused(tiny_shapes, save(tmp_path / "over.safetensors", deltas=deltas), tmp_path, "breaks the L-inf budget of 8/255")
    assert "3 value(s) reach 13/255, the largest in sample 17 (2 sample(s) over the budget)" in message
    # A tighter budget than the file was made for is refused the same way.
    refused(tiny_shapes, save(tmp_path / "ok.safetensors", deltas=int8_deltas(tiny_shapes)), tmp_path, "budget of 4/255", epsilon=4)


def test_images_too_far_from_the_clean_ones_are_over_budget(tiny_shapes, tmp_path):
    images = np.asarray(tiny_shapes.split("train").images).copy()
    images[9, 0, 4, 4] = (int(images[9, 0, 4, 4]) + 128) % 256
    message = refused(tiny_shapes, save(tmp_path / "far.safetensors", images=images), tmp_path, "poisoned image - clean image")
    assert "the largest in sample 9" in message


def test_nan_and_infinite_values_are_refused(tiny_shapes, tmp_path):
    floats = int8_deltas(tiny_shapes).astype(np.float32) / 255
    floats[6, 1, 2, 3] = np.nan
    refused(tiny_shapes, save(tmp_path / "nan.safetensors", deltas=floats), tmp_path, r"1 NaN or infinite value\(s\) \(first in sample 6\).*finite")
    floats[6, 1, 2, 3], floats[30, 0, 0, 0] = 0.0, -np.inf
    refused(tiny_shapes, save(tmp_path / "inf.safetensors", deltas=floats), tmp_path, r"first in sample 30")


def test_other_formats_are_refused_without_being_loaded(tiny_shapes, tmp_path, monkeypatch):
    deltas = int8_deltas(tiny_shapes)
    (tmp_path / "deltas.pkl").write_bytes(pickle.dumps({"deltas": deltas}))
    np.save(tmp_path / "deltas.npy", deltas)
    np.savez(tmp_path / "deltas.npz", deltas=deltas)
    (tmp_path / "deltas.txt").write_text("deltas = 0\n")
    # Loading any of them would go through one of these; none may run.
    def forbidden(*args, **kwargs):
        raise AssertionError("a submitted file was deserialised")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    for name, kind in [
        ("deltas.pkl", "a Python pickle"),
        ("deltas.npy", "a NumPy .npy array"),
        ("deltas.npz", "a zip archive"),
        ("deltas.txt", "unknown format"),
    ]:
        message = refused(tiny_shapes, tmp_path / name, tmp_path, f"{name} is not a valid safetensors file")
        assert kind in message and "never pickle" in message and "safetensors.numpy.save_file" in message
    refused(tiny_shapes, tmp_path / "absent.safetensors", tmp_path, "does not exist")


def test_wrong_dtypes_are_refused(tiny_shapes, tmp_path):
    deltas = int8_deltas(tiny_shapes)
    refused(tiny_shapes, save(tmp_path / "i16.safetensors", deltas=deltas.astype(np.int16)), tmp_path, "stores 'deltas' as I16.*int8 steps")
    refused(tiny_shapes, save(tmp_path / "u8.safetensors", deltas=np.abs(deltas).astype(np.uint8)), tmp_path, "name that tensor 'images'")
    images = np.asarray(tiny_shapes.split("train").images).astype(np.float32) / 255
    refused(tiny_shapes, save(tmp_path / "fimages.safetensors", images=images), tmp_path, "stores 'images' as F32.*uint8")


def test_missing_and_extra_tensors_are_refused(tiny_shapes, tmp_path):
    deltas = int8_deltas(tiny_shapes)
    refused(tiny_shapes, save(tmp_path / "named.safetensors", perturbations=deltas), tmp_path, r"\['perturbations'\] but no 'deltas' or 'images'")
    refused(tiny_shapes, save(tmp_path / "two.safetensors", deltas=deltas, labels=np.zeros(32, np.int64)), tmp_path, r"extra tensor\(s\) \['labels'\] besides 'deltas'")


def test_bad_and_taken_names_are_refused(tiny_shapes, tmp_path):
    path = save(tmp_path / "ok.safetensors", deltas=int8_deltas(tiny_shapes))
    for name in ("My-UE", "9lives", "my ue", "../escape", "trailing-", ""):
        refused(tiny_shapes, path, tmp_path, f"submission name {name!r} is not a valid method name", name=name)
    for name in ("lsp", "clean", "mtlue-em"):
        refused(tiny_shapes, path, tmp_path, f"{name!r} is already a method of the benchmark", name=name)


# --------------------------------------------------------------------------------------------
# the command line


def test_submit_command_writes_the_store_and_checks_the_dataset_name(tiny_shapes, tmp_path, capsys):
    path = save(tmp_path / "mine.safetensors", deltas=int8_deltas(tiny_shapes))
    out = tmp_path / "submissions" / "shapes" / "my-ue"
    assert main(["submit", str(path), "--dataset", "shapes", "--name", "my-ue", "--data", str(tiny_shapes.root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"sha256 {file_sha256(path)}" in printed and str(out) in printed
    assert load_store(out, tiny_shapes).card.method == "my-ue"

    assert main(["submit", str(path), "--dataset", "celeba", "--name", "x", "--data", str(tiny_shapes.root), "--out", str(tmp_path / "x")]) == 2
    assert "holds the prepared dataset 'shapes', not 'celeba'" in capsys.readouterr().err
    assert main(["submit", str(path), "--dataset", "shapes", "--name", "Bad", "--data", str(tiny_shapes.root)]) == 2
    assert "not a valid method name" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# installing into the workflow's results


@pytest.fixture
def submitted(tiny_shapes, tmp_path):
    """submissions/shapes/my-ue, made by `submit_file`, and the deltas it holds."""
    deltas = int8_deltas(tiny_shapes, seed=5)
    submit(tiny_shapes, save(tmp_path / "mine.safetensors", deltas=deltas), tmp_path)
    return tmp_path / "submissions", deltas


def test_list_and_install_copy_the_verified_store(tiny_shapes, tmp_path, submitted, capsys):
    root, deltas = submitted
    assert list_submissions(root, "shapes") == ["my-ue"]
    assert list_submissions(root, "celeba") == []
    out = tmp_path / "results" / "shapes" / "poisons" / "my-ue"
    installed = install_submission(root / "shapes" / "my-ue", tiny_shapes, out)
    for name in (CARD_NAME, DELTAS_NAME):
        assert (out / name).read_bytes() == (root / "shapes" / "my-ue" / name).read_bytes()
    assert np.array_equal(load_store(out, tiny_shapes).deltas, deltas) and installed.card.method == "my-ue"

    preview = tmp_path / "my-ue.png"
    assert main([
        "install-submission", "--data", str(tiny_shapes.root), "--submission", str(root / "shapes" / "my-ue"),
        "--out", str(out), "--preview", str(preview),
    ]) == 0
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "installed" in capsys.readouterr().out


def resign(folder, deltas, **card_changes):
    """Edit a submission store by hand, re-signing its card as someone covering their tracks would."""
    save_file({"deltas": deltas}, str(folder / DELTAS_NAME))
    card = json.loads((folder / CARD_NAME).read_text())
    card.update(sha256=file_sha256(folder / DELTAS_NAME), bytes=(folder / DELTAS_NAME).stat().st_size, **card_changes)
    (folder / CARD_NAME).write_text(json.dumps(card))


def test_install_refuses_hand_edits(tiny_shapes, tmp_path, submitted):
    root, deltas = submitted
    folder, out = root / "shapes" / "my-ue", tmp_path / "results" / "shapes" / "poisons" / "my-ue"

    content = bytearray((folder / DELTAS_NAME).read_bytes())
    content[-1] ^= 1
    (folder / DELTAS_NAME).write_bytes(bytes(content))
    with pytest.raises(PoisonError, match="fails its sha256 check"):
        install_submission(folder, tiny_shapes, out)

    wide = deltas.copy()
    wide[4, 0, 0, 0] = 16
    resign(folder, wide, epsilon=16, max_abs_delta=16)  # within the card's claim, not the protocol's
    with pytest.raises(PoisonError, match="budget of 16/255, more than the 8/255"):
        install_submission(folder, tiny_shapes, out)
    resign(folder, wide, epsilon=8, max_abs_delta=16)
    with pytest.raises(PoisonError, match="breaks the L-inf budget of 8/255.*largest in sample 4"):
        install_submission(folder, tiny_shapes, out)
    assert not out.exists()


def test_install_refuses_another_version_of_the_split(tmp_path, submitted):
    root, _ = submitted
    other = tmp_path / "other" / "shapes"
    create_builder("shapes", train_size=32, test_size=16, image_size=16, crop_size=12, dense_tasks=False, seed=7).prepare(other, tmp_path / "raw")
    with pytest.raises(PoisonError, match="another version of the training split"):
        install_submission(root / "shapes" / "my-ue", PreparedDataset(other), tmp_path / "results" / "my-ue")


def test_install_and_list_refuse_renamed_and_foreign_folders(tiny_shapes, tmp_path, submitted):
    root, deltas = submitted
    folder = root / "shapes" / "my-ue"
    with pytest.raises(PoisonError, match="must be the folder named after the submission"):
        install_submission(folder, tiny_shapes, tmp_path / "results" / "shapes" / "poisons" / "other")

    renamed = root / "shapes" / "their-ue"
    shutil.copytree(folder, renamed)
    with pytest.raises(PoisonError, match="names the submission 'my-ue' but lies in folder 'their-ue'"):
        list_submissions(root, "shapes")
    with pytest.raises(PoisonError, match="lies in folder 'their-ue'"):
        install_submission(renamed, tiny_shapes, tmp_path / "results" / "shapes" / "poisons" / "their-ue")
    shutil.rmtree(renamed)

    write_store(root / "shapes" / "lsp", deltas, dataset=tiny_shapes, method="lsp", hyperparameters={}, epsilon=8, seed=0)
    with pytest.raises(PoisonError, match="store of method 'lsp', not a submission"):
        list_submissions(root, "shapes")
    shutil.rmtree(root / "shapes" / "lsp")

    (root / "shapes" / "stray").mkdir()
    with pytest.raises(PoisonError, match="no finished poison store"):
        list_submissions(root, "shapes")
    (root / "shapes" / "stray").rmdir()
    (root / "shapes" / ".my-ue.abc.tmp").mkdir()  # a store being written: not listed
    assert list_submissions(root, "shapes") == ["my-ue"]


# --------------------------------------------------------------------------------------------
# a code plugin, built and installed as a package, run through the command line

PLUGIN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "mtlue-stripes"
version = "0.1.0"
dependencies = []

[project.entry-points."mtlue.methods"]
stripes = "mtlue_stripes.method:StripesMethod"

[tool.setuptools.packages.find]
where = ["src"]
"""

PLUGIN_METHOD = '''\
"""``stripes``: one random pattern of horizontal stripes per (task, class)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtlue.methods import ClasswiseHyperparameters, ClasswiseMethod, register_method


@dataclass(frozen=True)
class StripesHyperparameters(ClasswiseHyperparameters):
    #: Rows per stripe.
    width: int = 1

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be at least 1 row, got {self.width}")


@register_method("stripes")
class StripesMethod(ClasswiseMethod):
    description = "random horizontal stripes, one pattern per task and class"
    Hyperparameters = StripesHyperparameters

    def class_patterns(self, rng, classes, shape, epsilon):
        channels, height, width = shape
        stripes = -(-height // self.hyperparameters.width)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(classes, channels, stripes, 1))
        rows = np.repeat(signs, self.hyperparameters.width, axis=2)[:, :, :height]
        return np.broadcast_to(rows, (classes, channels, height, width)).copy()
'''


def mtlue_subprocess(*args, site):
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    return subprocess.run([sys.executable, "-m", "mtlue", *args], capture_output=True, text=True, env=environment, timeout=300)


def test_an_installed_plugin_package_is_listed_and_poisons(tiny_shapes, tmp_path):
    pytest.importorskip("setuptools.build_meta", reason="the plugin package is built with setuptools")
    package = tmp_path / "mtlue-stripes"
    (package / "src" / "mtlue_stripes").mkdir(parents=True)
    (package / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (package / "src" / "mtlue_stripes" / "__init__.py").write_text('"""A UE method plugin for mtlue."""\n')
    (package / "src" / "mtlue_stripes" / "method.py").write_text(textwrap.dedent(PLUGIN_METHOD))
    site = tmp_path / "site"
    # The package has no dependencies and the build backend is already installed: nothing is downloaded.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--no-cache-dir", "--quiet", "--target", str(site), str(package)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert built.returncode == 0, built.stderr
    assert (site / "mtlue_stripes-0.1.0.dist-info" / "entry_points.txt").is_file()

    listed = mtlue_subprocess("list", "methods", "--json", site=site)
    assert listed.returncode == 0, listed.stderr
    entries = {entry["name"]: entry["description"] for entry in json.loads(listed.stdout)}
    assert entries["stripes"] == "random horizontal stripes, one pattern per task and class" and "lsp" in entries

    out = tmp_path / "poisons" / "stripes"
    poisoned = mtlue_subprocess(
        "poison", "--data", str(tiny_shapes.root), "--method", "stripes", "--out", str(out), "--seed", "4", "--set", "width=2",
        site=site,
    )
    assert poisoned.returncode == 0, poisoned.stderr
    store = load_store(out, tiny_shapes, max_epsilon=EPSILON)
    assert (store.card.method, store.card.seed, store.card.submission) == ("stripes", 4, None)
    assert store.card.hyperparameters == {"adaptation": "grid", "width": 2}
    assert store.card.max_abs_delta == EPSILON and np.abs(store.deltas).max() == EPSILON

    # The plugin's name is taken from then on: a file cannot be submitted under it.
    path = save(tmp_path / "mine.safetensors", deltas=int8_deltas(tiny_shapes))
    clash = mtlue_subprocess("submit", str(path), "--dataset", "shapes", "--name", "stripes", "--data", str(tiny_shapes.root), site=site)
    assert clash.returncode == 2 and "'stripes' is already a method of the benchmark" in clash.stderr


def test_a_plugin_entry_point_with_an_invalid_name_is_named_at_listing(tmp_path, monkeypatch):
    from mtlue.methods import MethodError, list_methods

    info = tmp_path / "site" / "mtlue_badname-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mtlue-badname\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[mtlue.methods]\nMy_Method = numpy:zeros\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(MethodError, match="package mtlue-badname 1.0 declares a method 'My_Method'.*lower case.*rename"):
        list_methods()
