"""The poison cards behind a dataset's victims, and how each method's generation ended.

Tables and leaderboard entries are rendered from the victims' ``metrics.json`` files; what they
say about a poison itself (its hash, whether its generation met its stop rule) comes from the
card of its store, ``{results}/{dataset}/poisons/{method}/card.json``. A card is only used for
the victims that trained on exactly the deltas it describes: a store regenerated after its
victims ran would otherwise lend them its hash and its convergence.

A method whose generation a cap cut off before its stop rule held is marked :data:`CUT_OFF_MARK`
in the tables, with a footnote naming the cap (:func:`cut_off_footnote`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .collect import CLEAN, ReportError, VictimRecord

if TYPE_CHECKING:
    from mtlue.poisons import Convergence, PoisonCard

__all__ = ["CUT_OFF_MARK", "cut_off_footnote", "mark_method", "poison_card", "poison_convergence"]

#: Appended to a method's name where its poison's generation was cut off by a cap.
CUT_OFF_MARK = "†"


def poison_card(results: str | Path, dataset: str, method: str, records: Sequence[VictimRecord]) -> PoisonCard | None:
    """The card of ``method``'s store, checked against the images every victim of ``records`` trained on.

    None when the victims trained on the unmodified split and there is no store (``train_images``
    = ``clean``). A missing or unreadable card, or one that describes other deltas than the
    victims trained on (the store was regenerated after they ran), is a ReportError.
    """
    from mtlue.poisons.card import CARD_NAME, PoisonCard
    from mtlue.poisons.errors import PoisonError

    trained_on = sorted({record.train_images for record in records})
    card_path = Path(results) / dataset / "poisons" / method / CARD_NAME
    if trained_on == [CLEAN] and not card_path.exists():
        return None
    try:
        card = PoisonCard.from_json(json.loads(card_path.read_text(encoding="utf-8")), card_path)
    except FileNotFoundError:
        raise ReportError(
            f"victims of {dataset}/{method} trained on {trained_on[0]!r} but there is no poison card at {card_path}; "
            f"tables and leaderboard entries need its hash and convergence: restore the store or rerun `mtlue poison`"
        ) from None
    except (OSError, json.JSONDecodeError, PoisonError) as error:
        raise ReportError(f"poison card {card_path} cannot be read: {error}") from None
    expected = f"{card.method}:{card.sha256}"
    stale = [str(record.path) for record in records if record.train_images != expected]
    if card.method != method or stale:
        raise ReportError(
            f"{len(stale)} victim(s) of {dataset}/{method} did not train on the poison {card_path} describes ({expected[:24]}...), "
            f"e.g. {stale[0] if stale else card_path}; the store was regenerated after they ran: rerun those victims"
        )
    return card


def poison_convergence(results: str | Path, records: Sequence[VictimRecord]) -> dict[str, Convergence | None]:
    """Per method of ``records`` (one dataset): how its poison's generation ended, from its card.

    None for a method without a record: no store (clean images), a submission, or a card of
    format mtlue-poison/1.
    """
    by_method: dict[str, list[VictimRecord]] = {}
    for record in records:
        by_method.setdefault(record.method, []).append(record)
    found = {}
    for method, group in by_method.items():
        card = poison_card(results, group[0].dataset, method, group)
        found[method] = None if card is None else card.convergence
    return found


def mark_method(method: str, convergence: Mapping[str, Convergence | None]) -> str:
    """``method``, with :data:`CUT_OFF_MARK` if a cap cut its poison's generation short."""
    record = convergence.get(method)
    return f"{method} {CUT_OFF_MARK}" if record is not None and record.cut_off else method


def cut_off_footnote(convergence: Mapping[str, Convergence | None]) -> str:
    """Markdown lines explaining the marks, one per cut-off method; empty when no method is marked."""
    marked = {method: record for method, record in sorted(convergence.items()) if record is not None and record.cut_off}
    if not marked:
        return ""
    lines = [
        f"{CUT_OFF_MARK} Generation cut off by its cap before its stop rule held (`convergence` in the poison's "
        "card.json): the poison may protect less than the method can, so its scores may understate the method. "
        "Raise the cap and generate it again:",
        "",
    ]
    for method, record in marked.items():
        values = ", ".join(f"{name} {_number(value)}" for name, value in record.final.items())
        lines.append(
            f"- {method}: {record.cap_hyperparameter} = {record.cap} reached after {record.steps} {record.unit}(s)"
            f"{f' ({values})' if values else ''}; rule: {record.rule}; raise poisons.hyperparameters.{method}.{record.cap_hyperparameter}"
        )
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
