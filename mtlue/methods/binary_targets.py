"""How the ``"tap"`` objective may attack a binary task, checked without torch.

Apart from :mod:`mtlue.methods.objectives` (which needs torch) because the hyperparameters of
TAP, SEP and the MTL-UE methods check ``binary_target`` when they are built, and the Snakefile
builds them while it parses, in every cluster job's own parse too, where torch costs seconds.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["BINARY_TARGETS", "BinaryTarget", "check_binary_target"]

BinaryTarget = Literal["untargeted", "flip"]
#: How the ``"tap"`` objective attacks a binary task (module docstring).
BINARY_TARGETS: tuple[str, ...] = ("untargeted", "flip")


def check_binary_target(value: object) -> str:
    """``value`` if it is one of :data:`BINARY_TARGETS`, else a ValueError naming the choices."""
    if value not in BINARY_TARGETS:
        raise ValueError(
            f"binary_target must be one of {', '.join(BINARY_TARGETS)} (untargeted: ascend the BCE on the true labels, "
            f"the release's TAP; flip: descend toward 1 - y, the release's SEP); got {value!r}"
        )
    return str(value)
