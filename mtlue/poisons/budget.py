"""The L-inf budget in exact integer arithmetic.

A perturbation is stored as int8 steps of 1/255, the resolution of the published uint8 image, so
``|published - clean| <= epsilon`` is an integer comparison with no rounding left to chance. The
MTL-UE release kept float deltas, clamped them to 0.0314 (8.007/255) and cast the published image
to uint8 by truncation, which put pixels at -9/255 (reference, section 8.1); ``quantize`` rounds
to the nearest step and clips to the budget, and ``publish`` adds and clips in integers.
"""

from __future__ import annotations

import numpy as np

from .errors import PoisonError

__all__ = [
    "DEFAULT_EPSILON",
    "NORM",
    "check_epsilon",
    "round_to_steps",
    "quantize",
    "publish",
    "max_abs_per_sample",
    "check_budget",
    "check_deltas",
]

#: The benchmark's budget, 8/255 in L-inf (MTL-UE, section 1), in units of 1/255.
DEFAULT_EPSILON = 8
#: The only norm the stores hold; the card records it so that a future L2 store is never misread.
NORM = "linf"
#: int8 holds -128..127; a budget beyond 127/255 is no longer an imperceptible perturbation anyway.
_LARGEST_EPSILON = 127


def check_epsilon(epsilon: object) -> int:
    """Return ``epsilon`` as an int if it is a valid budget in 1/255 units, else raise."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, np.integer)):
        raise PoisonError(
            f"epsilon must be a whole number of 1/255 steps (8 means 8/255), got {epsilon!r}"
        )
    if not 1 <= int(epsilon) <= _LARGEST_EPSILON:
        raise PoisonError(
            f"epsilon must be in 1..{_LARGEST_EPSILON} (units of 1/255; the benchmark uses "
            f"{DEFAULT_EPSILON}), got {epsilon}"
        )
    return int(epsilon)


def round_to_steps(
    delta: np.ndarray,
    *,
    what: str = "the perturbation",
    fix: str = "the method that produced it diverged: fix it (or lower its step size) before storing",
    first_sample: int = 0,
) -> np.ndarray:
    """Float perturbation in [0, 1] image units -> whole 1/255 steps (float64), NOT clipped.

    Rounds to the nearest step, halves to even. The result stays float64 so that a value far
    outside int8 is reported as it is by ``check_budget`` instead of wrapping around in a cast.
    ``first_sample`` is the index of ``delta[0]`` when ``delta`` is a chunk of a larger array.
    """
    delta = np.asarray(delta)
    if not (np.issubdtype(delta.dtype, np.floating) or np.issubdtype(delta.dtype, np.integer)):
        raise PoisonError(f"{what} must be real-valued to be rounded to 1/255 steps, got dtype {delta.dtype}")
    finite = np.isfinite(delta)
    if not finite.all():
        bad = int(delta.size - np.count_nonzero(finite))
        where = ""
        if delta.ndim > 1:
            first = int(np.flatnonzero(~finite.reshape(len(delta), -1).all(axis=1))[0]) + first_sample
            where = f" (first in sample {first})"
        raise PoisonError(f"{what} has {bad} NaN or infinite value(s){where}; {fix}")
    return np.rint(delta.astype(np.float64) * 255.0)


def quantize(delta: np.ndarray, epsilon: int) -> np.ndarray:
    """Float perturbation in [0, 1] image units -> int8 steps of 1/255, within +-``epsilon``.

    Rounds to the nearest step (halves to even) and clips to the budget, so a method whose float
    output sits exactly on the bound (8/255) keeps it and one that overshoots is cut back.
    """
    epsilon = check_epsilon(epsilon)
    delta = np.asarray(delta)
    if not (np.issubdtype(delta.dtype, np.floating) or np.issubdtype(delta.dtype, np.integer)):
        raise PoisonError(f"quantize expects a real-valued array, got dtype {delta.dtype}")
    return np.clip(round_to_steps(delta), -epsilon, epsilon).astype(np.int8)


def publish(images: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """The image an attacker downloads: ``clip(x + delta, 0, 255)`` as uint8, in integers."""
    images, deltas = np.asarray(images), np.asarray(deltas)
    if images.dtype != np.uint8:
        raise PoisonError(f"publish expects uint8 images, got {images.dtype}")
    if deltas.dtype != np.int8:
        raise PoisonError(
            f"publish expects int8 deltas in 1/255 steps, got {deltas.dtype}; "
            f"convert float deltas with quantize(delta, epsilon)"
        )
    if images.shape != deltas.shape:
        raise PoisonError(f"images {images.shape} and deltas {deltas.shape} differ in shape")
    total = images.astype(np.int16) + deltas.astype(np.int16)
    return np.clip(total, 0, 255).astype(np.uint8)


def check_deltas(
    deltas: object,
    *,
    epsilon: int,
    shape: tuple[int, ...] | None = None,
    what: str = "the perturbation",
) -> None:
    """Raise ``PoisonError`` unless ``deltas`` is an int8 (N, C, H, W) array within the budget.

    ``what`` names the source in the message (a file, a method), so the reader knows what to fix.
    """
    epsilon = check_epsilon(epsilon)
    if not isinstance(deltas, np.ndarray):
        raise PoisonError(f"{what} must be a numpy array, got {type(deltas).__name__}")
    if deltas.dtype != np.int8:
        fix = (
            "convert it with mtlue.poisons.quantize(delta, epsilon) (float deltas in [0, 1] units)"
            if np.issubdtype(deltas.dtype, np.floating)
            else "store int8 steps of 1/255"
        )
        raise PoisonError(f"{what} has dtype {deltas.dtype}, a poison store holds int8 steps of 1/255: {fix}")
    if deltas.ndim != 4:
        raise PoisonError(f"{what} has shape {deltas.shape}, expected (samples, channels, height, width)")
    if shape is not None and tuple(deltas.shape) != tuple(shape):
        raise PoisonError(
            f"{what} has shape {tuple(deltas.shape)}, the training split needs {tuple(shape)} "
            f"(one delta per sample at the stored resolution): regenerate it for this dataset"
        )
    if deltas.size == 0:
        return
    low, high = int(deltas.min()), int(deltas.max())
    if low < -epsilon or high > epsilon:
        check_budget(
            max_abs_per_sample(deltas),
            epsilon=epsilon,
            values_over=int(np.count_nonzero((deltas < -epsilon) | (deltas > epsilon))),
            what=what,
            fix=f"clip with quantize(delta, {epsilon}) or regenerate within the budget",
        )


def max_abs_per_sample(values: np.ndarray) -> np.ndarray:
    """The largest |value| of every sample (axis 0) as float64, exact for int8 and whole steps.

    Reduces min and max separately, so an int8 array is never copied to a wider type (and -128
    does not overflow in abs).
    """
    values = np.asarray(values)
    if values.ndim == 0:
        raise PoisonError("max_abs_per_sample expects an array of samples, got a scalar")
    if values.size == 0:
        return np.zeros(len(values), dtype=np.float64)
    flat = values.reshape(len(values), -1)
    return np.maximum(-flat.min(axis=1).astype(np.float64), flat.max(axis=1).astype(np.float64))


def check_budget(
    max_abs: np.ndarray,
    *,
    epsilon: int,
    what: str,
    fix: str,
    values_over: int | None = None,
    first_sample: int = 0,
) -> None:
    """Raise ``PoisonError`` naming the worst sample if any of ``max_abs`` (per sample, in 1/255
    steps, from ``max_abs_per_sample``) exceeds ``epsilon``.

    ``values_over`` is how many single values break the budget, when the caller counted them.
    """
    epsilon = check_epsilon(epsilon)
    max_abs = np.asarray(max_abs, dtype=np.float64)
    over = np.flatnonzero(max_abs > epsilon)
    if not over.size:
        return
    worst = int(over[np.argmax(max_abs[over])])
    counted = f"{values_over} value(s)" if values_over is not None else "values"
    raise PoisonError(
        f"{what} breaks the L-inf budget of {epsilon}/255: {counted} reach {_steps(max_abs[worst])}/255, "
        f"the largest in sample {worst + first_sample} ({over.size} sample(s) over the budget); {fix}"
    )


def _steps(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"
