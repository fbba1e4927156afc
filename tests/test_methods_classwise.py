"""UE methods: registry and plugins, the class-wise methods and their multi-task adaptations, `mtlue poison`."""

from __future__ import annotations

import argparse
import math
import sys
import textwrap

import numpy as np
import pytest

from mtlue.config import ConfigError
from mtlue.data import (
    DatasetError,
    DatasetWriter,
    PreparedDataset,
    Task,
    TaskKind,
    create_builder,
)
from mtlue.methods import (
    GenerationContext,
    MethodError,
    Requirement,
    create_method,
    grid_cells,
    grid_size,
    list_methods,
    make_poison,
    method_description,
    registry,
)
from mtlue.methods.ar import filter_responses, run_autoregression
from mtlue.methods.commands import add_commands
from mtlue.poisons import load_store

#: Sample -> (first, second, third) classification labels. 0 and 1 share every label; 2, 3 and 4
#: each differ from 0 in exactly one task; 5 differs in all three.
LABELS = [(0, 0, 0), (0, 0, 0), (1, 0, 0), (0, 2, 0), (0, 0, 1), (1, 1, 1)]
TASKS = (
    Task("first", TaskKind.BINARY, 2),
    Task("depth", TaskKind.DEPTH, 1),  # dense: no class index, so class-wise methods skip it
    Task("second", TaskKind.MULTICLASS, 3),
    Task("third", TaskKind.BINARY, 2),
)
CLASSIFICATION = ("first", "second", "third")
SIZE = 16
#: K = 3 classification tasks -> a 2 x 2 grid of 8 x 8 cells, row-major; the fourth cell is unused.
CELLS = {
    "first": (slice(0, 8), slice(0, 8)),
    "second": (slice(0, 8), slice(8, 16)),
    "third": (slice(8, 16), slice(0, 8)),
    None: (slice(8, 16), slice(8, 16)),
}


def write_labelled(root, channels=3, tasks=TASKS):
    rng = np.random.default_rng(0)
    with DatasetWriter(root, name=root.name, tasks=tasks, image_shape=(channels, SIZE, SIZE), crop_size=12) as writer:
        for split in ("train", "test"):
            data = writer.split(split, len(LABELS))
            data.images[:] = rng.integers(0, 256, data.images.shape, dtype=np.uint8)
            for task in tasks:
                if task.is_dense:
                    data.targets[task.name][:] = rng.uniform(0.5, 5.0, data.targets[task.name].shape)
                else:
                    data.targets[task.name][:] = [labels[CLASSIFICATION.index(task.name)] for labels in LABELS]
    return PreparedDataset(root)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_labelled(tmp_path_factory.mktemp("data") / "labelled")


@pytest.fixture(scope="module")
def grayscale(tmp_path_factory):
    return write_labelled(tmp_path_factory.mktemp("data") / "grayscale", channels=1)


@pytest.fixture(scope="module")
def generated(dataset):
    """Deltas of every class-wise method and adaptation, seed 0, generated once."""
    return {
        (name, adaptation): create_method(name, adaptation=adaptation).generate(dataset, GenerationContext(seed=0))
        for name in ("lsp", "ar")
        for adaptation in ("grid", "average")
    }


# --------------------------------------------------------------------------------------------
# the multi-task grid


@pytest.mark.parametrize(("tasks", "side"), [(1, 1), (2, 2), (3, 2), (4, 2), (5, 4), (14, 4), (16, 4), (17, 8), (40, 8)])
def test_grid_side_is_the_next_power_of_two_of_ceil_sqrt(tasks, side):
    assert grid_size(tasks) == side
    assert side == 2 ** math.ceil(math.log2(math.ceil(math.sqrt(tasks))))


def test_grid_cells_tile_the_image_row_major():
    # CelebA: 40 tasks on 70 px images, an 8 x 8 grid of 8 and 9 px cells, 24 unused.
    cells = grid_cells(70, 70, 40)
    assert len(cells) == 40
    cover = np.zeros((70, 70), dtype=int)
    for rows, columns in cells:
        assert rows.stop - rows.start in (8, 9) and columns.stop - columns.start in (8, 9)
        cover[rows, columns] += 1
    assert cover.max() == 1 and cover[:35].all() and not cover[61:].any()  # 5 full rows of 8 cells
    assert cells[1][0] == cells[0][0] and cells[8][1] == cells[0][1]  # row-major
    with pytest.raises(ValueError, match="adaptation='average'"):
        grid_cells(4, 4, 40)


# --------------------------------------------------------------------------------------------
# class-wise methods


@pytest.mark.parametrize("adaptation", ["grid", "average"])
@pytest.mark.parametrize("name", ["lsp", "ar"])
def test_deltas_have_the_split_shape_and_respect_the_budget(generated, name, adaptation):
    deltas = generated[name, adaptation]
    assert deltas.dtype == np.int8 and deltas.shape == (len(LABELS), 3, SIZE, SIZE)
    assert np.abs(deltas.astype(np.int16)).max() <= 8
    assert deltas.any()


@pytest.mark.parametrize("name", ["lsp", "ar"])
def test_grayscale_and_smaller_budgets(grayscale, name):
    deltas = create_method(name).generate(grayscale, GenerationContext(seed=1, epsilon=4))
    assert deltas.shape == (len(LABELS), 1, SIZE, SIZE) and deltas.dtype == np.int8
    assert np.abs(deltas.astype(np.int16)).max() == 4  # the largest values sit on the bound


@pytest.mark.parametrize("name", ["lsp", "ar"])
def test_same_seed_same_deltas_other_seed_other_deltas(dataset, generated, name):
    again = create_method(name).generate(dataset, GenerationContext(seed=0))
    assert np.array_equal(again, generated[name, "grid"])
    other = create_method(name).generate(dataset, GenerationContext(seed=1))
    assert not np.array_equal(other, generated[name, "grid"])


@pytest.mark.parametrize("name", ["lsp", "ar"])
def test_grid_gives_each_task_its_own_cell(generated, name):
    deltas = generated[name, "grid"]
    # Samples 0 and 1 share every label, so they share the whole delta.
    assert np.array_equal(deltas[0], deltas[1])
    # Samples 2, 3, 4 differ from sample 0 in one task each: exactly that task's cell changes.
    for sample, task in ((2, "first"), (3, "second"), (4, "third")):
        for owner, (rows, columns) in CELLS.items():
            same = np.array_equal(deltas[sample][:, rows, columns], deltas[0][:, rows, columns])
            assert same == (owner != task), (sample, task, owner)
    # The unused fourth cell stays clean for every sample.
    rows, columns = CELLS[None]
    assert not deltas[:, :, rows, columns].any()


@pytest.mark.parametrize("name", ["lsp", "ar"])
def test_average_is_shared_within_a_label_combination(generated, name):
    deltas = generated[name, "average"]
    assert np.array_equal(deltas[0], deltas[1])
    for sample in (2, 3, 4, 5):
        assert not np.array_equal(deltas[sample], deltas[0])


def test_adding_a_task_leaves_the_other_tasks_patterns_unchanged(tmp_path, dataset):
    # Patterns are keyed by (seed, method, task name), not drawn in task order.
    smaller = write_labelled(tmp_path / "smaller", tasks=tuple(t for t in TASKS if t.name != "second"))
    method = create_method("lsp", adaptation="average")
    first = method.task_patterns(dataset.task("first"), dataset.image_shape, GenerationContext(seed=0))
    again = method.task_patterns(smaller.task("first"), smaller.image_shape, GenerationContext(seed=0))
    assert np.array_equal(first, again)


def test_dense_only_datasets_are_refused(tmp_path):
    depth_only = write_labelled(tmp_path / "depth_only", tasks=(Task("depth", TaskKind.DEPTH, 1),))
    with pytest.raises(MethodError, match="no classification task.*depth \\(depth\\).*per-sample method"):
        create_method("lsp").generate(depth_only, GenerationContext())


def test_lsp_patterns_are_sign_blocks_of_distinct_clusters():
    method = create_method("lsp", patch_size=4)
    patterns = method.class_patterns(np.random.default_rng(0), 5, (3, 10, 10), 8)
    assert patterns.shape == (5, 3, 10, 10) and np.allclose(np.abs(patterns).max(axis=(1, 2, 3)), 1.0)
    # Constant over each 4 x 4 block (the last block cropped to 2 px).
    assert np.array_equal(patterns[:, :, :4, :4], np.repeat(np.repeat(patterns[:, :, :1, :1], 4, 2), 4, 3))
    # class_sep 10 against N(0, 1) noise: every block keeps its cluster's sign, and the classes'
    # sign vectors differ, so one linear layer separates them.
    signs = np.sign(patterns[:, :, ::4, ::4].reshape(5, -1))
    assert len(np.unique(signs, axis=0)) == 5
    with pytest.raises(MethodError, match="lower patch_size"):
        create_method("lsp", patch_size=16).class_patterns(np.random.default_rng(0), 3, (1, 8, 8), 8)


def test_autoregression_sweep_equals_the_raster_recursion():
    rng = np.random.default_rng(5)
    coefficients = rng.standard_normal((4, 3, 3)) * 0.3
    coefficients[:, 2, 2] = 0
    start = rng.standard_normal((4, 7, 9))
    expected = start.copy()
    for row in range(2, 7):
        for column in range(2, 9):
            window = expected[:, row - 2 : row + 1, column - 2 : column + 1]
            expected[:, row, column] = np.sum(window * coefficients, axis=(1, 2))
    assert np.allclose(run_autoregression(coefficients, start), expected, rtol=1e-12, atol=1e-12)


def test_an_ar_filter_cancels_its_own_texture_only():
    rng = np.random.default_rng(2)
    # Two 3-channel processes with small coefficients (bounded over a short run).
    processes = rng.uniform(-0.15, 0.15, (2, 3, 3, 3))
    processes[:, :, 2, 2] = 0
    textures = run_autoregression(processes.reshape(6, 3, 3), rng.standard_normal((6, 12, 12))).reshape(2, 3, 12, 12)
    responses = np.stack([filter_responses(processes, texture / np.linalg.norm(texture)) for texture in textures])
    assert np.allclose(np.diag(responses), 0.0, atol=1e-9)
    assert responses[0, 1] > 0.1 and responses[1, 0] > 0.1


def test_ar_patterns_use_the_whole_range_and_respect_the_class_count():
    patterns = create_method("ar").class_patterns(np.random.default_rng(3), 4, (3, 20, 24), 8)
    assert patterns.shape == (4, 3, 20, 24) and np.isfinite(patterns).all()
    assert np.allclose(np.abs(patterns).max(axis=(1, 2, 3)), 1.0)
    assert len({pattern.tobytes() for pattern in patterns}) == 4


def test_ar_keeps_the_papers_per_pixel_l2_norm_and_clips_only_the_tails():
    shape = (3, 32, 32)
    raw = create_method("ar", norm="linf").class_patterns(np.random.default_rng(3), 4, shape, 8)
    scaled = create_method("ar").class_patterns(np.random.default_rng(3), 4, shape, 8)
    # The same processes and starts, scaled differently: the L2 form is the max form times one
    # factor per pattern, clipped at the budget.
    ratio = scaled / np.where(raw == 0, 1, raw)
    for pattern, factor in zip(scaled, ratio):
        inside = np.abs(pattern) < 1
        assert np.allclose(factor[inside], factor[inside].flat[0])
    # Before clipping, the RMS is the paper's L2 norm 1 on 3 x 32 x 32, in units of 8/255.
    target = 255.0 / (8 * np.sqrt(3 * 32 * 32))
    unclipped = raw * ratio.reshape(4, -1)[np.arange(4), np.argmax(np.abs(scaled).reshape(4, -1) < 1, axis=1)][:, None, None, None]
    assert np.allclose(np.sqrt(np.mean(unclipped**2, axis=(1, 2, 3))), target)
    # Most of the texture is kept: a small share of the values reaches the budget, and the
    # quantised deltas are far from the near-zero levels the max scaling gives.
    assert 0.0 < np.mean(np.abs(scaled) >= 1) < 0.2
    assert np.mean(np.abs(np.round(8 * scaled))) > 2.5 > np.mean(np.abs(np.round(8 * raw)))


def test_ar_draws_each_task_in_its_own_cell_size(dataset, generated):
    # The cell's delta is the process drawn at 8 x 8 (burn-in and all), not a subsampled 16 x 16
    # pattern; LSP keeps the release's subsampling.
    method = create_method("ar")
    context = GenerationContext(seed=0)
    cell = method.task_patterns(dataset.task("first"), (3, 8, 8), context)
    rows, columns = CELLS["first"]
    expected = np.clip(np.round(cell[0] * 8), -8, 8)
    assert np.array_equal(generated["ar", "grid"][0][:, rows, columns], expected)
    assert not create_method("lsp").draw_in_cell and method.draw_in_cell


def test_clean_goes_through_the_same_store_path(dataset, tmp_path):
    store = make_poison(dataset, create_method("clean"), GenerationContext(seed=0), tmp_path / "clean")
    loaded = load_store(tmp_path / "clean", dataset)
    assert loaded.card.method == "clean" and loaded.card.max_abs_delta == 0
    assert loaded.deltas.shape == (len(LABELS), 3, SIZE, SIZE) and not loaded.deltas.any()
    assert store.card == loaded.card


def test_same_seed_gives_byte_identical_stores(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    for name in ("first", "second"):
        make_poison(dataset, create_method("ar"), GenerationContext(seed=7), tmp_path / name, ratio=0.5)
    for file in ("deltas.safetensors", "card.json"):
        assert (tmp_path / "first" / file).read_bytes() == (tmp_path / "second" / file).read_bytes()
    card = load_store(tmp_path / "first", dataset).card
    assert len(card.poisoned_indices) == 3 and card.created.startswith("2023-11-14")


# --------------------------------------------------------------------------------------------
# registry, hyperparameters, requirements


def test_builtin_methods_are_listed_and_described():
    assert {"clean", "lsp", "ar"} <= set(list_methods())
    assert "KDD 2022" in method_description("lsp") and "NeurIPS 2022" in method_description("ar")


def test_unknown_method_and_hyperparameters_list_the_valid_names():
    with pytest.raises(MethodError, match="unknown method 'lssp'; available: .*ar, clean, (.*, )?lsp"):
        create_method("lssp")
    with pytest.raises(MethodError, match="no hyperparameter\\(s\\) patchsize; valid: adaptation, patch_size, class_sep"):
        create_method("lsp", patchsize=4)
    with pytest.raises(MethodError, match="adaptation must be one of 'grid', 'average', got 'diagonal'"):
        create_method("ar", adaptation="diagonal")
    with pytest.raises(MethodError, match="patch_size must be an integer, got 'big'"):
        create_method("lsp", patch_size="big")
    with pytest.raises(MethodError, match="patch_size must be at least 1"):
        create_method("lsp", patch_size=0)
    with pytest.raises(MethodError, match="valid: none"):
        create_method("clean", strength=2)
    assert issubclass(MethodError, ConfigError)


def test_repr_shows_hyperparameters_with_paper_defaults():
    assert repr(create_method("lsp", class_sep=5)) == "LSPMethod(adaptation='grid', patch_size=8, class_sep=5.0)"
    assert repr(create_method("clean")) == "CleanMethod()"
    assert create_method("ar").hyperparameters_dict() == {
        "adaptation": "grid",
        "burn_in": 4,
        "stability_trials": 3,
        "stability_bound": 5.0,
        "min_cross_response": 10.0,
        "norm": "l2",
        "l2_norm": 1.0,
    }


def test_context_checks_what_a_method_requires(tmp_path):
    with pytest.raises(MethodError, match="needs a clean surrogate model.*--surrogate PATH"):
        GenerationContext().check_provides(Requirement.SURROGATE, "tap")
    with pytest.raises(MethodError, match="--surrogate-checkpoint PATH"):
        GenerationContext().check_provides(Requirement.SURROGATE_CHECKPOINTS, "sep")
    with pytest.raises(MethodError, match="do not exist"):
        GenerationContext(surrogate=tmp_path / "final.pt").check_provides(Requirement.SURROGATE, "tap")
    (tmp_path / "final.pt").write_bytes(b"weights")
    context = GenerationContext(surrogate=tmp_path / "final.pt")
    context.check_provides(Requirement.SURROGATE, "tap")
    assert context.surrogate_files(Requirement.SURROGATE) == (tmp_path / "final.pt",)
    assert context.surrogate_files(Requirement.NOTHING) == ()
    with pytest.raises(MethodError, match="whole number of 1/255"):
        GenerationContext(epsilon=0.03)


# --------------------------------------------------------------------------------------------
# third-party methods through the `mtlue.methods` entry-point group

PLUGIN_MODULE = '''
"""A third-party method: every pixel shifted by the same number of 1/255 steps."""
from dataclasses import dataclass

import numpy as np

from mtlue.methods import UEMethod


@dataclass(frozen=True)
class ShiftHyperparameters:
    step: int = 2


class ConstantShift(UEMethod):
    description = "a constant brightness shift"
    Hyperparameters = ShiftHyperparameters

    def generate_deltas(self, dataset, context):
        samples = len(dataset.split("train"))
        return np.full((samples, *dataset.image_shape), self.hyperparameters.step, dtype=np.int8)
'''


def install_distribution(site, name, version, entry_points, modules=None):
    """Lay out an installed distribution as pip does: a .dist-info folder beside its modules."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[mtlue.methods]\n{lines}")
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh site directory on sys.path; the registry and imported plugins are restored afterwards."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(registry.METHODS, "entries", dict(registry.METHODS.entries))
    before = set(sys.modules)
    yield folder
    for module in set(sys.modules) - before:
        if module.startswith("mtlue_demo"):
            del sys.modules[module]


def test_an_installed_package_adds_a_method(site, dataset, tmp_path):
    install_distribution(
        site, "mtlue-demo-shift", "1.0", {"constant_shift": "mtlue_demo_shift:ConstantShift"}, {"mtlue_demo_shift": PLUGIN_MODULE}
    )
    assert "constant_shift" in list_methods()
    assert "mtlue_demo_shift" not in sys.modules  # listing does not import plugins
    method = create_method("constant_shift", step=3)
    assert repr(method) == "ConstantShift(step=3)"
    store = make_poison(dataset, method, GenerationContext(seed=0), tmp_path / "shift")
    assert store.card.method == "constant_shift" and store.card.hyperparameters == {"step": 3}
    assert (load_store(tmp_path / "shift", dataset).deltas == 3).all()
    with pytest.raises(MethodError, match="valid: step"):
        create_method("constant_shift", steps=3)


def test_a_broken_plugin_is_named_and_does_not_hide_the_others(site):
    install_distribution(site, "mtlue-demo-broken", "2.0", {"broken": "mtlue_demo_missing:Method"})
    install_distribution(
        site, "mtlue-demo-shift", "1.0", {"constant_shift": "mtlue_demo_shift:ConstantShift"}, {"mtlue_demo_shift": PLUGIN_MODULE}
    )
    assert {"broken", "constant_shift", "lsp"} <= set(list_methods())
    with pytest.raises(MethodError, match="from package mtlue-demo-broken 2.0 fails to load.*ModuleNotFoundError.*reinstall or uninstall"):
        create_method("broken")
    assert create_method("constant_shift").name == "constant_shift"


def test_a_plugin_must_provide_a_method_class(site):
    install_distribution(site, "mtlue-demo-numpy", "0.1", {"not_a_method": "numpy:zeros"})
    with pytest.raises(MethodError, match="mtlue-demo-numpy 0.1.*not a subclass of mtlue.methods.UEMethod"):
        create_method("not_a_method")


def test_a_plugin_may_not_take_a_builtin_name(site):
    install_distribution(
        site, "mtlue-demo-shadow", "1.0", {"lsp": "mtlue_demo_shadow:ConstantShift"}, {"mtlue_demo_shadow": PLUGIN_MODULE}
    )
    with pytest.raises(MethodError, match="package mtlue-demo-shadow 1.0 declares a method 'lsp'.*built-in"):
        list_methods()
    with pytest.raises(MethodError, match="built-in"):
        create_method("lsp")


# --------------------------------------------------------------------------------------------
# `mtlue poison`


def poison_parser():
    parser = argparse.ArgumentParser(prog="mtlue")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_poison_command_writes_a_store_and_a_preview(tmp_path, capsys):
    create_builder("shapes", train_size=10, test_size=2, image_size=16, crop_size=12).prepare(tmp_path / "shapes", tmp_path / "raw")
    out, preview = tmp_path / "poisons" / "lsp", tmp_path / "lsp.png"
    args = poison_parser().parse_args([
        "poison", "--data", str(tmp_path / "shapes"), "--method", "lsp", "--out", str(out),
        "--seed", "2", "--epsilon", "6", "--ratio", "0.5", "--set", "patch_size=2", "--set", "adaptation=average",
        "--preview", str(preview),
    ])
    args.handler(args)
    store = load_store(out, PreparedDataset(tmp_path / "shapes"))
    assert store.card.hyperparameters == {"adaptation": "average", "patch_size": 2, "class_sep": 10.0}
    assert (store.card.seed, store.card.epsilon, store.card.ratio, len(store.card.poisoned_indices)) == (2, 6, 0.5, 5)
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    captured = capsys.readouterr()
    assert "5/10 samples poisoned" in captured.out
    assert "class-wise over 9 classification task(s)" in captured.err  # the 3 dense tasks are skipped


def test_poison_command_errors_name_the_fix(tmp_path, capsys):
    parser = poison_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["poison", "--data", "d", "--method", "lsp", "--out", "o", "--set", "patch_size"])
    assert "expected KEY=VALUE" in capsys.readouterr().err
    args = parser.parse_args(["poison", "--data", "d", "--method", "lsp", "--out", "o", "--set", "patch_size=2", "--set", "patch_size=4"])
    with pytest.raises(MethodError, match="patch_size set more than once"):
        args.handler(args)
    args = parser.parse_args(["poison", "--data", str(tmp_path / "missing"), "--method", "lsp", "--out", str(tmp_path / "o")])
    with pytest.raises(DatasetError, match="no prepared dataset"):
        args.handler(args)
