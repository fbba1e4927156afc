"""Numbers reported in the MTL-UE paper, shown beside (never inside) the measured leaderboard.

Source: /work/shared/reference/MTL-UE.md section 7, Table A: CelebA, ResNet-18 victims, equal
weighting, no defense, mean test accuracy over the 40 attributes (%), from secondary summaries
of the paper (unverified against its PDF). They apply only to a protocol of exactly that
setting (dataset ``celeba``, backbone ``resnet18``, weighting ``ew``, defense ``none`` among the
defenses), where they sit in a separate column labelled as reported, compared with the
measured undefended score. Table B's non-CelebA numbers are left out: the paper does not say
which MTL-UE variant produced them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtlue.report.collect import NO_DEFENSE

__all__ = ["REPORTED_LABEL", "reported_score", "reported_applies"]

REPORTED_LABEL = "reported in the paper, not measured here"
SOURCE = "Yu et al., ICML 2025 (MTL-UE), Table A as summarised in the project's reference notes; unverified against the PDF"

#: (dataset, mode) -> method -> mean accuracy (%), ResNet-18 / EW / no defense.
_REPORTED: dict[tuple[str, str], dict[str, float]] = {
    ("celeba", "mtl"): {
        "clean": 91.11, "ar": 73.12, "em": 75.66, "tap": 85.24, "sep": 84.25,
        "mtlue-em": 74.38, "mtlue-tap": 59.51, "mtlue-sep": 63.77,
    },
    ("celeba", "stl"): {
        "clean": 90.35, "ar": 84.41, "em": 89.91, "tap": 87.00, "sep": 89.91,
        "mtlue-em": 74.26, "mtlue-tap": 68.65, "mtlue-sep": 72.51,
    },
}


def reported_applies(dataset: str, protocol: Mapping[str, Any]) -> bool:
    """Whether the paper reports numbers for this exact dataset and protocol."""
    return (
        (dataset, protocol["mode"]) in _REPORTED and list(protocol["backbones"]) == ["resnet18"]
        and list(protocol["weightings"]) == ["ew"] and NO_DEFENSE in protocol["defenses"]
    )


def reported_score(entry: Mapping[str, Any]) -> float | None:
    """The paper's number for the entry's method, dataset and protocol, or None."""
    dataset = entry["dataset"]["name"]
    if not reported_applies(dataset, entry["protocol"]):
        return None
    return _REPORTED[(dataset, entry["protocol"]["mode"])].get(entry["method"])
