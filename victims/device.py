"""Where a victim trains, and in which precision.

``"auto"`` picks CUDA when available and the CPU otherwise. Apple's MPS is used only when asked
for (``"mps"``): its kernels cover fewer operators and are not bit-reproducible, which matters
more here than its speed.

Mixed precision is bfloat16 autocast and nothing else. bf16 has float32's exponent range, so no
loss scaling is needed; fp16 would need a GradScaler, whose scaled losses would pass through the
task-weighting strategies and distort every strategy that is not scale-invariant (GradNorm,
Nash-MTL, FairGrad, ...), and whose unscaling would have to happen after gradient aggregation,
inside each strategy. A GPU without bf16 support therefore trains in float32.
"""

from __future__ import annotations

import warnings

import torch

from mtlue.errors import DeviceError

__all__ = ["DeviceError", "autocast_dtype", "configure_threads", "resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` -> an available device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"device {name!r} requested but MPS is not available; use --device cpu or auto")
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device type {device.type!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def autocast_dtype(device: torch.device, amp: bool | None) -> torch.dtype | None:
    """The autocast dtype for ``device``, or None for full float32.

    ``amp=None`` (automatic) enables bf16 on CUDA devices that support it; ``amp=True`` asks
    for it and fails on other devices: on the CPU, bf16 autocast gave NaN gradients in the
    stem of timm ResNets after one step (torch 2.14) and is slower than float32 on most
    processors anyway.
    """
    if amp is False:
        return None
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if amp:
            warnings.warn(
                f"{torch.cuda.get_device_name(device)} has no bfloat16 support; training in float32 "
                f"(fp16 autocast is not offered, see victims.device)",
                stacklevel=2,
            )
        return None
    if amp:
        raise DeviceError(f"mixed precision is only offered on CUDA devices, not on {device.type}; use --amp off or auto")
    return None


def configure_threads(num_threads: int | None) -> None:
    """Fix the number of intra-op CPU threads (None: leave torch's default)."""
    if num_threads is None:
        return
    if num_threads < 1:
        raise DeviceError(f"num_threads must be at least 1, got {num_threads}")
    torch.set_num_threads(num_threads)
