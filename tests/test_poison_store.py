"""Perturbation stores: exact budget arithmetic, round trips, and every way a store is refused."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors.numpy import save_file

from mtlue import __version__
from mtlue.data import DatasetError, PreparedDataset, create_builder
from mtlue.io import file_sha256
from mtlue.poisons import (
    CARD_NAME,
    DELTAS_NAME,
    Convergence,
    PoisonError,
    SubmissionRecord,
    check_deltas,
    load_store,
    poison_mask,
    poisoned_count,
    publish,
    quantize,
    read_card,
    write_store,
)
from mtlue.poisons import store as store_module

EPSILON = 8


def make_shapes(root, seed=0):
    create_builder("shapes", train_size=12, test_size=4, image_size=16, crop_size=12, seed=seed).prepare(
        root, root.parent / "raw"
    )
    return PreparedDataset(root)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("data") / "shapes")


def random_deltas(dataset, seed=0, epsilon=EPSILON):
    shape = (len(dataset.split("train")), *dataset.image_shape)
    return np.random.default_rng(seed).integers(-epsilon, epsilon + 1, shape, dtype=np.int8)


def write(dataset, out, deltas=None, **overrides):
    arguments = {"dataset": dataset, "method": "lsp", "hyperparameters": {"patch_size": 8}, "epsilon": EPSILON, "seed": 3}
    arguments.update(overrides)
    return write_store(out, random_deltas(dataset) if deltas is None else deltas, **arguments)


def rewrite_deltas(store_dir, deltas, **card_changes):
    """Replace a store's tensor by hand and re-sign the card, as a careless or hostile editor would."""
    path = store_dir / DELTAS_NAME
    save_file({"deltas": deltas}, str(path))
    resign(store_dir, **card_changes)


def resign(store_dir, **card_changes):
    card = json.loads((store_dir / CARD_NAME).read_text())
    card.update(sha256=file_sha256(store_dir / DELTAS_NAME), bytes=(store_dir / DELTAS_NAME).stat().st_size)
    card.update(card_changes)
    (store_dir / CARD_NAME).write_text(json.dumps(card))


# --------------------------------------------------------------------------------------------
# budget arithmetic


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    epsilon=st.integers(1, 32),
    shape=hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=4),
)
def test_published_images_stay_within_budget_exactly(data, epsilon, shape):
    # Pixels near 0 and 255 are where clipping happens and where a float pipeline goes wrong.
    near_the_ends = st.one_of(st.integers(0, 12), st.integers(243, 255))
    images = data.draw(hnp.arrays(np.uint8, shape, elements=near_the_ends))
    deltas = data.draw(hnp.arrays(np.int8, shape, elements=st.integers(-epsilon, epsilon)))
    published = publish(images, deltas)
    assert published.dtype == np.uint8
    change = published.astype(np.int16) - images.astype(np.int16)
    assert np.abs(change).max() <= epsilon
    # Wherever no clipping was needed the delta arrives intact.
    unclipped = (images.astype(np.int16) + deltas >= 0) & (images.astype(np.int16) + deltas <= 255)
    assert np.array_equal(change[unclipped], deltas[unclipped].astype(np.int16))


@settings(max_examples=200, deadline=None)
@given(
    epsilon=st.integers(1, 32),
    values=hnp.arrays(np.float64, st.integers(1, 50), elements=st.floats(-0.3, 0.3, allow_nan=False)),
)
def test_quantize_rounds_to_nearest_step_and_clips_to_budget(epsilon, values):
    steps = quantize(values, epsilon)
    assert steps.dtype == np.int8
    assert np.abs(steps.astype(np.int16)).max() <= epsilon
    inside = np.abs(values * 255) <= epsilon
    assert np.all(np.abs(steps[inside] - values[inside] * 255) <= 0.5 + 1e-9)
    assert np.all(steps[~inside] == np.sign(values[~inside]) * epsilon)


def test_quantize_keeps_the_bound_where_the_release_overshot():
    # The release floored x*255 + delta*255 when casting to uint8: -8/255 became -9 on odd pixels.
    deltas = np.array([-8 / 255, 8 / 255, 7.6 / 255, -7.6 / 255, 0.4 / 255, -0.6 / 255, 0.0314])
    assert quantize(deltas, 8).tolist() == [-8, 8, 8, -8, 0, -1, 8]
    images = np.array([101, 100, 0, 255, 7, 7, 250], dtype=np.uint8)
    assert publish(images, quantize(deltas, 8)).tolist() == [93, 108, 8, 247, 7, 6, 255]


def test_quantize_refuses_nan_and_bad_budgets():
    with pytest.raises(PoisonError, match="NaN or infinite"):
        quantize(np.array([0.01, np.nan]), 8)
    with pytest.raises(PoisonError, match="NaN or infinite"):
        quantize(np.array([np.inf]), 8)
    with pytest.raises(PoisonError, match="whole number of 1/255"):
        quantize(np.zeros(3), 8.5)
    with pytest.raises(PoisonError, match="in 1..127"):
        quantize(np.zeros(3), 0)


def test_publish_refuses_float_deltas_and_shape_mismatch():
    images = np.zeros((1, 3, 2, 2), dtype=np.uint8)
    with pytest.raises(PoisonError, match="quantize"):
        publish(images, np.zeros((1, 3, 2, 2), dtype=np.float32))
    with pytest.raises(PoisonError, match="uint8 images"):
        publish(images.astype(np.float32), np.zeros((1, 3, 2, 2), dtype=np.int8))
    with pytest.raises(PoisonError, match="differ in shape"):
        publish(images, np.zeros((2, 3, 2, 2), dtype=np.int8))


def test_check_deltas_counts_the_offending_values():
    deltas = np.zeros((2, 1, 2, 2), dtype=np.int8)
    deltas[0, 0, 0, 0], deltas[1, 0, 1, 1] = 9, -128
    with pytest.raises(PoisonError, match=r"2 value\(s\) reach 128/255"):
        check_deltas(deltas, epsilon=8)


# --------------------------------------------------------------------------------------------
# writing and reading


def test_round_trip_keeps_deltas_and_records_provenance(dataset, tmp_path):
    deltas = random_deltas(dataset)
    written = write(dataset, tmp_path / "lsp", deltas)
    assert sorted(path.name for path in (tmp_path / "lsp").iterdir()) == [CARD_NAME, DELTAS_NAME]

    store = load_store(tmp_path / "lsp", dataset)
    assert np.array_equal(store.deltas, deltas) and store.deltas.dtype == np.int8
    card = store.card
    train = dataset.split("train")
    assert card == written.card == read_card(tmp_path / "lsp")
    assert (card.method, card.hyperparameters, card.epsilon, card.norm, card.seed) == ("lsp", {"patch_size": 8}, 8, "linf", 3)
    assert (card.dataset, card.split, card.split_content_hash, card.samples) == ("shapes", "train", train.content_hash, 12)
    assert card.image_shape == (3, 16, 16)
    assert card.sha256 == file_sha256(tmp_path / "lsp" / DELTAS_NAME)
    assert card.max_abs_delta == 8 and card.ratio == 1.0 and card.poisoned_indices is None
    assert card.mtlue_version == __version__ and card.created
    assert np.array_equal(store.published(train, slice(2, 5)), publish(np.asarray(train.images[2:5]), deltas[2:5]))


def test_write_refuses_over_budget_and_float_deltas_and_leaves_nothing(dataset, tmp_path):
    deltas = random_deltas(dataset)
    deltas[4, 1, 2, 3] = 9
    with pytest.raises(PoisonError, match="budget of 8/255"):
        write(dataset, tmp_path / "over", deltas)
    with pytest.raises(PoisonError, match="dtype float32.*quantize"):
        write(dataset, tmp_path / "float", random_deltas(dataset).astype(np.float32) / 255)
    with pytest.raises(PoisonError, match="need.*12, 3, 16, 16"):
        write(dataset, tmp_path / "short", random_deltas(dataset)[:-1])
    assert list(tmp_path.iterdir()) == []


def test_read_refuses_a_hand_made_over_budget_file(dataset, tmp_path):
    write(dataset, tmp_path / "store")
    deltas = random_deltas(dataset)
    deltas[0, 0, 0, 0] = 12
    rewrite_deltas(tmp_path / "store", deltas, max_abs_delta=12)
    with pytest.raises(PoisonError, match="breaks the L-inf budget of 8/255.*12/255"):
        load_store(tmp_path / "store", dataset)


def test_read_refuses_a_store_made_with_a_larger_budget_than_allowed(dataset, tmp_path):
    write(dataset, tmp_path / "wide", random_deltas(dataset, epsilon=16), epsilon=16)
    assert load_store(tmp_path / "wide", dataset).card.epsilon == 16
    with pytest.raises(PoisonError, match="budget of 16/255, more than the 8/255"):
        load_store(tmp_path / "wide", dataset, max_epsilon=8)


def test_read_refuses_float_files(dataset, tmp_path):
    write(dataset, tmp_path / "store")
    rewrite_deltas(tmp_path / "store", random_deltas(dataset).astype(np.float32) / 255)
    with pytest.raises(PoisonError, match="stores F32 deltas.*int8"):
        load_store(tmp_path / "store", dataset)


def test_read_refuses_tampered_bytes(dataset, tmp_path):
    write(dataset, tmp_path / "store")
    path = tmp_path / "store" / DELTAS_NAME
    content = bytearray(path.read_bytes())
    content[-1] = (content[-1] + 1) % 256
    path.write_bytes(bytes(content))
    with pytest.raises(PoisonError, match="fails its sha256 check.*regenerate"):
        load_store(tmp_path / "store", dataset)


def test_read_refuses_truncated_file(dataset, tmp_path):
    write(dataset, tmp_path / "store")
    path = tmp_path / "store" / DELTAS_NAME
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PoisonError, match="is truncated"):
        load_store(tmp_path / "store", dataset)


def test_read_refuses_non_safetensors_file_even_with_matching_hash(dataset, tmp_path):
    write(dataset, tmp_path / "store")
    (tmp_path / "store" / DELTAS_NAME).write_bytes(pickle.dumps(random_deltas(dataset)))
    resign(tmp_path / "store")
    with pytest.raises(PoisonError, match="not a valid safetensors file.*never pickle"):
        load_store(tmp_path / "store", dataset)


def test_read_refuses_wrong_sample_count_and_shape(dataset, tmp_path):
    write(dataset, tmp_path / "store")
    rewrite_deltas(tmp_path / "store", random_deltas(dataset)[:-2])
    with pytest.raises(PoisonError, match=r"shape \(10, 3, 16, 16\).*needs \(12, 3, 16, 16\)"):
        load_store(tmp_path / "store", dataset)
    resign(tmp_path / "store", samples=10)
    with pytest.raises(PoisonError, match="declares 10 samples.*has 12"):
        load_store(tmp_path / "store", dataset)


def test_read_refuses_a_store_of_another_version_of_the_split(dataset, tmp_path):
    write(dataset, tmp_path / "store")
    other = make_shapes(tmp_path / "reshuffled" / "shapes", seed=1)
    assert other.image_shape == dataset.image_shape and len(other.split("train")) == 12
    with pytest.raises(PoisonError, match="another version of the training split.*mtlue poison"):
        load_store(tmp_path / "store", other)


def test_read_refuses_missing_card_and_edited_card(dataset, tmp_path):
    with pytest.raises(PoisonError, match="no finished poison store"):
        load_store(tmp_path / "nothing", dataset)
    write(dataset, tmp_path / "store")
    card = json.loads((tmp_path / "store" / CARD_NAME).read_text())
    (tmp_path / "store" / CARD_NAME).write_text(json.dumps({**card, "max_abs_delta": 3}))
    with pytest.raises(PoisonError, match="card was edited"):
        load_store(tmp_path / "store", dataset)
    (tmp_path / "store" / CARD_NAME).write_text(json.dumps({**card, "epsilon": "8"}))
    with pytest.raises(PoisonError, match="whole number"):
        read_card(tmp_path / "store")
    del card["sha256"]
    (tmp_path / "store" / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(PoisonError, match="lacks sha256"):
        read_card(tmp_path / "store")
    (tmp_path / "store" / CARD_NAME).write_text("{not json")
    with pytest.raises(PoisonError, match="not valid JSON"):
        read_card(tmp_path / "store")


#: A generation that a cap of 2 rounds cut off: what an EM run's card records.
CUT_OFF = Convergence(
    rule="surrogate training error <= 0.01", converged=False, stopped_by="cap", unit="round", steps=2, cap=2,
    cap_hyperparameter="max_rounds", final={"train_error": 0.25}, target={"train_error": 0.01},
    history=({"round": 1, "train_error": 0.5, "seconds": 1.5}, {"round": 2, "train_error": 0.25, "seconds": 1.25}),
)


def test_cards_record_convergence_and_submissions_none(dataset, tmp_path):
    written = write(dataset, tmp_path / "em", convergence=CUT_OFF)
    card = read_card(tmp_path / "em")
    assert card == written.card and card.convergence == CUT_OFF and card.format == "mtlue-poison/2"
    assert json.loads((tmp_path / "em" / CARD_NAME).read_text())["convergence"]["stopped_by"] == "cap"
    assert card.convergence.cut_off and "cut off by its cap max_rounds = 2 after 2 round(s)" in card.convergence.describe()
    # A store no method generated (a submission) says so with an explicit null.
    record = SubmissionRecord(file="mine.safetensors", sha256="0" * 64, bytes=1, layout="int8-deltas")
    write(dataset, tmp_path / "submitted", submission=record)
    assert json.loads((tmp_path / "submitted" / CARD_NAME).read_text())["convergence"] is None
    assert read_card(tmp_path / "submitted").convergence is None
    with pytest.raises(PoisonError, match="a submitted store records no convergence"):
        write(dataset, tmp_path / "both", submission=record, convergence=CUT_OFF)


def test_cards_of_format_1_are_still_read_without_a_record(dataset, tmp_path):
    write(dataset, tmp_path / "old", convergence=CUT_OFF)
    card = json.loads((tmp_path / "old" / CARD_NAME).read_text())
    old = {key: value for key, value in card.items() if key != "convergence"}
    (tmp_path / "old" / CARD_NAME).write_text(json.dumps({**old, "format": "mtlue-poison/1"}))
    store = load_store(tmp_path / "old", dataset)
    assert store.card.convergence is None and store.card.format == "mtlue-poison/1"
    assert store.card.to_json() == {**old, "format": "mtlue-poison/1"}  # copied as it was (install-submission)
    (tmp_path / "old" / CARD_NAME).write_text(json.dumps(old))  # format 2 without the record
    with pytest.raises(PoisonError, match="lacks convergence"):
        read_card(tmp_path / "old")
    (tmp_path / "old" / CARD_NAME).write_text(json.dumps({**card, "format": "mtlue-poison/1"}))
    with pytest.raises(PoisonError, match="unknown field\\(s\\) convergence"):
        read_card(tmp_path / "old")
    (tmp_path / "old" / CARD_NAME).write_text(json.dumps({**card, "format": "mtlue-poison/3"}))
    with pytest.raises(PoisonError, match="reads 'mtlue-poison/1' and 'mtlue-poison/2'"):
        read_card(tmp_path / "old")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(converged=True), "converged True but stopped_by 'cap', which means converged False"),
        (lambda c: c.update(stopped_by="tired"), "stopped_by is 'tired', not one of stop_rule, cap"),
        (lambda c: c.update(converged="no"), "converged must be true, false or null"),
        (lambda c: c.update(steps=3), "steps is 3 but the history has 2"),
        (lambda c: c["history"][1].update(round=5), "history\\[1\\] is not round 2"),
        (lambda c: c["history"][0].update(train_error="low"), "history\\[0\\].train_error must be a finite number or null"),
        (lambda c: c["final"].update(train_error=float("nan")), "final.train_error must be a finite number or null"),
        (lambda c: c.update(cap=None), "cap and convergence.cap_hyperparameter are given together"),
        (lambda c: c.pop("target"), "must have exactly the fields"),
    ],
)
def test_cards_with_an_inconsistent_convergence_are_refused(dataset, tmp_path, change, message):
    write(dataset, tmp_path / "em", convergence=CUT_OFF)
    card = json.loads((tmp_path / "em" / CARD_NAME).read_text())
    change(card["convergence"])
    (tmp_path / "em" / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(PoisonError, match=message) as error:
        read_card(tmp_path / "em")
    assert str(tmp_path / "em" / CARD_NAME) in str(error.value)


def test_poison_errors_are_dataset_errors_for_the_command_line():
    assert issubclass(PoisonError, DatasetError)


def test_a_failed_write_leaves_no_store_and_keeps_the_previous_one(dataset, tmp_path, monkeypatch):
    out = tmp_path / "poisons" / "lsp"
    previous = write(dataset, out, random_deltas(dataset, seed=1))

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    # Fail at the very last step, after the deltas file is complete: nothing may be published.
    monkeypatch.setattr(store_module, "atomic_write_json", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write(dataset, out, random_deltas(dataset, seed=2))
    with pytest.raises(OSError, match="No space left"):
        write(dataset, tmp_path / "poisons" / "fresh", random_deltas(dataset, seed=2))
    assert sorted(path.name for path in (tmp_path / "poisons").iterdir()) == ["lsp"]
    assert np.array_equal(load_store(out, dataset).deltas, previous.deltas)


# --------------------------------------------------------------------------------------------
# partial poisoning


@pytest.mark.parametrize(("samples", "ratio", "expected"), [(1000, 0.3, 300), (5, 0.5, 3), (7, 0.0, 0), (7, 1.0, 7), (3, 0.5, 2)])
def test_poison_mask_selects_exactly_the_rounded_share(samples, ratio, expected):
    mask = poison_mask(samples, ratio, seed=4)
    assert mask.dtype == bool and mask.shape == (samples,)
    assert mask.sum() == expected == poisoned_count(samples, ratio)


def test_poison_mask_is_seeded():
    first, again, other = (poison_mask(500, 0.2, seed) for seed in (1, 1, 2))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    with pytest.raises(PoisonError, match=r"ratio must be a number in \[0, 1\]"):
        poison_mask(10, 1.5, 0)


def test_partial_store_records_indices_and_keeps_the_rest_zero(dataset, tmp_path):
    mask = poison_mask(12, 0.25, seed=3)
    deltas = random_deltas(dataset)
    deltas[~mask] = 0
    write(dataset, tmp_path / "partial", deltas, ratio=0.25, poisoned_indices=np.flatnonzero(mask))
    store = load_store(tmp_path / "partial", dataset)
    assert store.card.poisoned_indices == tuple(np.flatnonzero(mask).tolist()) and len(store.card.poisoned_indices) == 3
    assert np.array_equal(store.poisoned_mask(), mask)
    assert not store.deltas[~mask].any()

    with pytest.raises(PoisonError, match=r"perturbs 9 sample\(s\) outside the poisoned selection"):
        write(dataset, tmp_path / "leaky", random_deltas(dataset), ratio=0.25, poisoned_indices=np.flatnonzero(mask))
    with pytest.raises(PoisonError, match="selects 3 of 12 samples, but no indices"):
        write(dataset, tmp_path / "unsaid", deltas, ratio=0.25)
    with pytest.raises(PoisonError, match="which selects exactly 3"):
        write(dataset, tmp_path / "miscounted", deltas, ratio=0.25, poisoned_indices=np.flatnonzero(mask)[:2])
    assert not (tmp_path / "leaky").exists() and not (tmp_path / "miscounted").exists()
