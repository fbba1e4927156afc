"""The tie rule (mtlue.report.ties): what its rank guarantees, on random means and stds.

Every property below is one the module docstring promises; hypothesis draws sets of up to eight
named estimates, with stds from 0 to large and, where the property allows, single-seed results.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mtlue.report import ReportError
from mtlue.report.ties import TIE_FACTOR, Estimate, TieRank, rank_labels, separated, tie_ranks

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

_means = st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False)
_stds = st.floats(min_value=0, max_value=20, allow_nan=False, allow_infinity=False)


@st.composite
def estimates(draw, single_seed: bool = False) -> Estimate:
    """A measured estimate over 2-5 seeds, or (with ``single_seed``) possibly one seed."""
    if single_seed and draw(st.booleans()):
        return Estimate(draw(_means), None, 1)
    # Means on a grid of 0.25 and stds as multiples of 0.125 make exact ties and exact 2-std gaps common.
    mean = draw(st.one_of(_means, st.integers(-40, 40).map(lambda k: k / 4)))
    std = draw(st.one_of(_stds, st.integers(0, 16).map(lambda k: k / 8)))
    return Estimate(mean, std, draw(st.integers(2, 5)))


def named(single_seed: bool = False, min_size: int = 1):
    return st.dictionaries(st.sampled_from("abcdefgh"), estimates(single_seed), min_size=min_size, max_size=8)


@PROPERTY_SETTINGS
@given(estimates())
def test_identical_results_tie_and_share_a_rank(estimate):
    ranks = tie_ranks({"a": estimate, "b": estimate})
    assert ranks["a"] == TieRank(1, ("b",)) and ranks["b"] == TieRank(1, ("a",))
    assert rank_labels(ranks) == {"a": "=1", "b": "=1"}


@PROPERTY_SETTINGS
@given(named(single_seed=True, min_size=2))
def test_separated_better_means_strictly_better_rank_and_equal_rank_means_tie(items):
    ranks = tie_ranks(items)
    for a in items:
        for b in items:
            if a == b:
                continue
            if separated(items[a], items[b]):
                assert ranks[a].rank < ranks[b].rank
                assert b not in ranks[a].ties_with and a not in ranks[b].ties_with
            tied = not separated(items[a], items[b]) and not separated(items[b], items[a])
            assert (b in ranks[a].ties_with) == tied == (a in ranks[b].ties_with)
            if ranks[a].rank is not None and ranks[a].rank == ranks[b].rank:
                assert tied


@PROPERTY_SETTINGS
@given(named(single_seed=True, min_size=2))
def test_separation_is_transitive(items):
    for a in items:
        for b in items:
            for c in items:
                if separated(items[a], items[b]) and separated(items[b], items[c]):
                    assert separated(items[a], items[c])


@PROPERTY_SETTINGS
@given(named())
def test_rank_counts_the_methods_better_beyond_twice_the_larger_std(items):
    ranks = tie_ranks(items)
    for name, mine in items.items():
        better = [
            other for other, theirs in items.items()
            if other != name and mine.mean - theirs.mean > TIE_FACTOR * max(mine.std, theirs.std)
        ]
        assert ranks[name].rank == 1 + len(better)
        assert 1 <= ranks[name].rank <= len(items)
    lowest = min(items, key=lambda name: items[name].mean)
    assert ranks[lowest].rank == 1


@PROPERTY_SETTINGS
@given(named(min_size=2))
def test_a_method_ranks_above_a_lower_mean_only_when_the_two_tie(items):
    ranks = tie_ranks(items)
    for a in items:
        for b in items:
            if items[a].mean < items[b].mean and ranks[a].rank > ranks[b].rank:
                assert b in ranks[a].ties_with


@PROPERTY_SETTINGS
@given(named(single_seed=True, min_size=2), st.randoms(use_true_random=False))
def test_ranks_do_not_depend_on_input_order(items, random):
    names = list(items)
    random.shuffle(names)
    assert tie_ranks({name: items[name] for name in names}) == tie_ranks(items)


@PROPERTY_SETTINGS
@given(
    named(single_seed=True, min_size=2),
    st.integers(-50, 50).map(float),
    st.sampled_from([0.5, 1.0, 100.0 / 81.0, 4.0]),
)
def test_ranks_do_not_change_under_a_shift_or_a_common_positive_scale(items, shift, factor):
    ranks = tie_ranks(items)
    shifted = {name: Estimate(e.mean + shift, e.std, e.n_seeds) for name, e in items.items()}
    scaled = {name: e.scaled(factor) for name, e in items.items()}
    # Floating point can move a gap of exactly 2 std by one ulp either way; the rule itself cannot.
    assume(all(
        not math.isclose(abs(a.mean - b.mean), TIE_FACTOR * max(a.std, b.std), rel_tol=1e-9, abs_tol=1e-9)
        for a in items.values() for b in items.values() if a.std is not None and b.std is not None
    ))
    assert tie_ranks(shifted) == ranks
    assert tie_ranks(scaled) == ranks


@PROPERTY_SETTINGS
@given(named(min_size=2), st.sampled_from("abcdefgh"), st.floats(min_value=0, max_value=50))
def test_improving_a_mean_never_worsens_its_rank(items, name, gain):
    assume(name in items)
    before = tie_ranks(items)[name].rank
    better = {**items, name: Estimate(items[name].mean - gain, items[name].std, items[name].n_seeds)}
    assert tie_ranks(better)[name].rank <= before


@PROPERTY_SETTINGS
@given(st.dictionaries(st.sampled_from("abcdefgh"), _means, min_size=1, max_size=8))
def test_with_one_seed_nothing_is_ranked_and_everything_ties(means):
    ranks = tie_ranks({name: Estimate(mean, None, 1) for name, mean in means.items()})
    for name, ranked in ranks.items():
        assert ranked.rank is None
        assert ranked.ties_with == tuple(sorted(set(means) - {name}))
    assert set(rank_labels(ranks).values()) == {"–"}


@PROPERTY_SETTINGS
@given(named(min_size=1), _means)
def test_a_single_seed_result_is_unranked_and_does_not_move_the_others(items, mean):
    with_one = {**items, "z": Estimate(mean, None, 1)}
    ranks = tie_ranks(with_one)
    assert ranks["z"] == TieRank(None, tuple(sorted(items)))
    for name, ranked in tie_ranks(items).items():
        assert ranks[name] == TieRank(ranked.rank, tuple(sorted((*ranked.ties_with, "z"))))


def test_a_gap_of_exactly_twice_the_larger_std_is_a_tie():
    a, b = Estimate(10.0, 0.5, 3), Estimate(12.0, 1.0, 3)
    assert not separated(a, b)
    assert separated(a, Estimate(12.25, 1.0, 3))
    assert not separated(Estimate(5.0, 0.0, 2), Estimate(5.0, 0.0, 2))
    assert separated(Estimate(5.0, 0.0, 2), Estimate(5.5, 0.0, 2))


def test_ties_are_not_transitive_and_the_rank_stays_defined():
    """The module docstring's example: c ties a and b, a is separated from b."""
    items = {"a": Estimate(10.0, 0.1, 3), "b": Estimate(10.5, 0.2, 3), "c": Estimate(10.6, 1.0, 3)}
    ranks = tie_ranks(items)
    assert {name: item.rank for name, item in ranks.items()} == {"a": 1, "b": 2, "c": 1}
    assert ranks["c"].ties_with == ("a", "b") and ranks["a"].ties_with == ("c",)
    assert rank_labels(ranks) == {"a": "=1", "b": "2", "c": "=1"}


def test_estimate_is_mean_and_sample_std_and_never_a_zero_std_for_one_seed():
    values = [70.0, 70.5, 71.5]
    estimate = Estimate.of(values)
    assert estimate.mean == pytest.approx(np.mean(values)) and estimate.n_seeds == 3
    assert estimate.std == pytest.approx(np.std(values, ddof=1))
    assert Estimate.of([61.2]) == Estimate(61.2, None, 1)
    assert Estimate.from_columns(61.2, float("nan"), 1) == Estimate(61.2, None, 1)
    with pytest.raises(ReportError, match="must be unavailable"):
        Estimate(61.2, 0.0, 1)
    with pytest.raises(ReportError, match="must be a number"):
        Estimate(61.2, None, 2)
    with pytest.raises(ReportError, match="finite mean"):
        Estimate.of([float("nan"), 1.0])
    with pytest.raises(ReportError, match="at least one seed"):
        Estimate.of([])
    with pytest.raises(ReportError, match="positive factor"):
        estimate.scaled(0.0)
