"""Mean ± std over seeds, and ranks that do not separate what seed noise cannot.

Every table and the leaderboard summarise a number measured once per seed with
:class:`Estimate` and rank methods with :func:`tie_ranks`; nothing else in the project decides
whether two results differ, so the report and the leaderboard cannot disagree about a tie.

**Estimate.** The mean over seeds, the *sample* standard deviation (``ddof=1``: the spread one
more seed of the same victim would show, the convention of "mean ± std over N seeds" tables)
and the number of seeds. With one seed the std is unavailable (``None``), never 0: one run says
nothing about how far another seed would move it.

**Tie rule.** Lower is better (the headline score: a lower score means better protection).
``a`` is *separated* better than ``b`` when::

    b.mean - a.mean > TIE_FACTOR * max(a.std, b.std)        (TIE_FACTOR = 2)

otherwise the two *tie*. A difference of exactly twice the larger std is a tie, so identical
results tie even when their std is 0. When either std is unavailable nothing is separated:
with one seed no difference can be told from seed noise. The margin is the seeds' own spread,
not the standard error of the mean, on purpose: the claim a rank makes is that another seed
would not swap the two methods. It is a screening rule, not a significance test.

**Rank.** Ties are not transitive (``a`` ties ``b``, ``b`` ties ``c``, yet ``a`` is separated
from ``c``), so "the position in the sorted list, with ties sharing a position" is not well
defined. This count is::

    rank(a) = 1 + #{b : b is separated better than a}

and an item whose std is unavailable gets no rank (``None``) and ties with every other item.
Separation is transitive (``b - a > 2 max(sa, sb)`` and ``c - b > 2 max(sb, sc)`` give
``c - a > 2 (sa + sc) >= 2 max(sa, sc)``), which yields what the rank guarantees
(``tests/test_ties.py`` checks each on random inputs):

- separated better means a strictly better rank; an equal rank means a tie;
- the lowest mean has rank 1; rank ``r`` means exactly ``r - 1`` methods are better beyond noise;
- a method is ranked above one with a lower mean only when the two tie;
- ranks do not depend on the input order, and do not change when every mean is shifted or every
  mean and std is multiplied by the same positive number (clean-normalised numbers rank as
  the raw ones do); improving a method's mean never worsens its rank.

Tied methods can still have different ranks: with ``a`` = 10.0 ± 0.1, ``b`` = 10.5 ± 0.2 and
``c`` = 10.6 ± 1.0, ``a`` is separated from ``b`` but ``c`` ties both, so the ranks are 1, 2, 1.
Rank 1 for ``c`` means "nothing is shown to be better", not "shown to be best"; tables print
each method's ties beside its rank, and :func:`rank_labels` writes ``=2`` for a shared rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .collect import ReportError

__all__ = [
    "NOT_RANKED",
    "RANK_RULE",
    "STD_CONVENTION",
    "TIE_FACTOR",
    "Estimate",
    "TieRank",
    "rank_labels",
    "separated",
    "tie_ranks",
    "ties_label",
]

#: A difference up to TIE_FACTOR times the larger of the two stds is a tie.
TIE_FACTOR = 2.0
#: The rule in one sentence, for the notes under tables and the leaderboard.
RANK_RULE = (
    f"rank = 1 + the number of methods whose score is lower by more than {TIE_FACTOR:g} x the larger of the "
    "two stds; closer results tie, and a shared rank is written =r"
)
#: The std convention in one sentence, for the same notes.
STD_CONVENTION = "± is the sample standard deviation over seeds (ddof=1); with one seed it is unavailable, never 0"
#: Why nothing is ranked when a result has a single seed.
NOT_RANKED = "with one seed no difference can be told from seed noise, so nothing is ranked (–)"


@dataclass(frozen=True)
class Estimate:
    """A quantity over seeds: mean, sample std (None with one seed) and the number of seeds."""

    mean: float
    std: float | None
    n_seeds: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.mean):
            raise ReportError(f"an estimate needs a finite mean, got {self.mean}; a victim's score is missing or broken")
        if self.n_seeds < 1:
            raise ReportError(f"an estimate needs at least one seed, got {self.n_seeds}")
        if (self.std is None) != (self.n_seeds < 2):
            raise ReportError(
                f"the std over {self.n_seeds} seed(s) must be {'unavailable (None)' if self.n_seeds < 2 else 'a number'}, "
                f"got {self.std!r}"
            )
        if self.std is not None and not (math.isfinite(self.std) and self.std >= 0):
            raise ReportError(f"a standard deviation must be finite and non-negative, got {self.std}")

    @classmethod
    def of(cls, values: Iterable[float]) -> Estimate:
        """Mean and sample std (ddof=1) of one value per seed."""
        array = np.asarray(list(values), dtype=float)
        if array.size == 0:
            raise ReportError("an estimate needs at least one seed's value, got none")
        std = float(np.std(array, ddof=1)) if array.size > 1 else None
        return cls(float(np.mean(array)), std, int(array.size))

    @classmethod
    def from_columns(cls, mean: float, std: float | None, n_seeds: int) -> Estimate:
        """From a table's ``*_mean``, ``*_std`` (NaN or None with one seed) and ``n_seeds`` cells."""
        missing = std is None or (isinstance(std, float) and math.isnan(std))
        return cls(float(mean), None if missing else float(std), int(n_seeds))

    def scaled(self, factor: float) -> Estimate:
        """The same estimate in other units (``factor`` > 0), e.g. as a percentage of the clean score."""
        if not (math.isfinite(factor) and factor > 0):
            raise ReportError(f"an estimate can only be rescaled by a finite positive factor, got {factor}")
        return Estimate(self.mean * factor, None if self.std is None else self.std * factor, self.n_seeds)


@dataclass(frozen=True)
class TieRank:
    """An item's rank under the tie rule (None: not rankable, one seed) and the items it ties with."""

    rank: int | None
    ties_with: tuple[str, ...]


def separated(better: Estimate, worse: Estimate) -> bool:
    """Whether ``better`` is lower than ``worse`` by more than the noise (module docstring)."""
    if better.std is None or worse.std is None:
        return False
    return worse.mean - better.mean > TIE_FACTOR * max(better.std, worse.std)


def tie_ranks(estimates: Mapping[str, Estimate]) -> dict[str, TieRank]:
    """The rank of every named estimate (lower mean is better) and its ties, by name (sorted)."""
    names = sorted(estimates)
    ranks = {}
    for name in names:
        mine = estimates[name]
        ties = tuple(
            other for other in names
            if other != name and not separated(estimates[other], mine) and not separated(mine, estimates[other])
        )
        beaten_by = sum(separated(estimates[other], mine) for other in names if other != name)
        ranks[name] = TieRank(None if mine.std is None else 1 + beaten_by, ties)
    return ranks


def rank_labels(ranks: Mapping[str, TieRank]) -> dict[str, str]:
    """Display text per name: ``3``, ``=2`` when another item has the same rank, ``–`` when unranked."""
    counts: dict[int, int] = {}
    for item in ranks.values():
        if item.rank is not None:
            counts[item.rank] = counts.get(item.rank, 0) + 1
    return {
        name: "–" if item.rank is None else f"={item.rank}" if counts[item.rank] > 1 else str(item.rank)
        for name, item in ranks.items()
    }


def ties_label(name: str, ranks: Mapping[str, TieRank], separator: str = ", ") -> str:
    """Display text of ``name``'s ties: the names, ``—`` (no tie: not "none", which reads as a defense), or ``all others``."""
    ties = ranks[name].ties_with
    if not ties:
        return "—"
    if len(ties) > 1 and len(ties) == len(ranks) - 1:
        return "all others"
    return separator.join(ties)
