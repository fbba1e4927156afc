"""Batched image operations of UEraser, on float (B, C, H, W) images in [0, 1] with per-sample parameters.

Every function takes per-sample parameter tensors of shape (B,) and returns images in [0, 1]
on the input's device; random draws come from the caller's device generator.

- :func:`plasma`: fractal ("plasma") fields by octave synthesis: uniform noise on 2x2, 4x4,
  ... grids, bilinearly upsampled and summed with amplitude ``roughness ** octave``, rescaled to
  [0, 1] per sample (the same family of fields as the diamond-square algorithm of TorMentor /
  kornia: rougher means more fine detail).
- :func:`plasma_brightness`: ``x + intensity * (2 P - 1)``: local brightening and darkening.
- :func:`plasma_contrast`: ``(x - 1/2) * 2 P + 1/2``: local contrast factors in [0, 2].
- :func:`channel_shuffle`: a random channel permutation per selected sample.
- :func:`trivial_augment`: TrivialAugment (Müller & Hutter, ICCV 2021): one operation per sample,
  drawn uniformly, with a magnitude drawn uniformly from its range. The operations and ranges
  are kornia's TrivialAugment default policy (what the UEraser release uses): auto-contrast,
  equalize, invert, posterize (4-8 bits kept), solarize (threshold in [0, 1]), color, contrast,
  brightness and sharpness (factors in [0.1, 1.9]), and the geometric rotate (+-30 degrees),
  shear x / y (+-0.3) and translate x / y (+-10 % of the side). Geometric operations fill
  uncovered pixels with 0 and are used only when ``geometric=True``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "GEOMETRIC_OPS",
    "PHOTOMETRIC_OPS",
    "channel_shuffle",
    "equalize",
    "plasma",
    "plasma_brightness",
    "plasma_contrast",
    "trivial_augment",
]

_LUMA = (0.299, 0.587, 0.114)


def _column(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _uniform(batch: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(batch, generator=generator, device=device)


def plasma(batch: int, height: int, width: int, roughness: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, 1, H, W) fractal fields in [0, 1], one per sample (see the module docstring)."""
    device = roughness.device
    octaves = max(1, math.ceil(math.log2(max(height, width))))
    field = torch.zeros(batch, 1, height, width, device=device)
    for octave in range(octaves):
        side = 2 ** (octave + 1)
        noise = torch.rand(batch, 1, side, side, generator=generator, device=device)
        layer = F.interpolate(noise, size=(height, width), mode="bilinear", align_corners=False)
        field += _column(roughness**octave) * layer
    low = field.amin(dim=(2, 3), keepdim=True)
    high = field.amax(dim=(2, 3), keepdim=True)
    return (field - low) / (high - low).clamp(min=1e-12)


def plasma_brightness(images: torch.Tensor, roughness: torch.Tensor, intensity: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    batch, _, height, width = images.shape
    field = plasma(batch, height, width, roughness, generator)
    return (images + _column(intensity) * (2 * field - 1)).clamp(0.0, 1.0)


def plasma_contrast(images: torch.Tensor, roughness: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    batch, _, height, width = images.shape
    field = plasma(batch, height, width, roughness, generator)
    return ((images - 0.5) * 2 * field + 0.5).clamp(0.0, 1.0)


def channel_shuffle(images: torch.Tensor, selected: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    batch, channels = images.shape[:2]
    order = torch.rand(batch, channels, generator=generator, device=images.device).argsort(dim=1)
    order = torch.where(selected[:, None], order, torch.arange(channels, device=images.device)[None, :])
    return images.gather(1, order[:, :, None, None].expand_as(images))


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] != 3:
        return images.mean(dim=1, keepdim=True)
    weights = torch.tensor(_LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (other + _column(factor) * (images - other)).clamp(0.0, 1.0)


def _levels(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round().long().clamp(0, 255)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per sample and channel on the 256 uint8 levels (PIL's algorithm)."""
    batch, channels, height, width = images.shape
    levels = _levels(images).view(batch * channels, height * width)
    histogram = torch.zeros(batch * channels, 256, device=images.device).scatter_add_(1, levels, torch.ones_like(levels, dtype=torch.float))
    last = histogram.gather(1, levels.amax(dim=1, keepdim=True))
    step = torch.div(histogram.sum(dim=1, keepdim=True) - last, 255, rounding_mode="floor")
    lut = torch.div(histogram.cumsum(dim=1) + torch.div(step, 2, rounding_mode="floor"), step.clamp(min=1), rounding_mode="floor")
    lut = F.pad(lut, (1, 0))[:, :-1].clamp(0, 255)
    equalized = lut.gather(1, levels).div(255.0)
    flat = images.reshape(batch * channels, height * width)
    return torch.where(step > 0, equalized, flat).view_as(images)


def _sharpness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    channels = images.shape[1]
    kernel = torch.ones(3, 3, device=images.device, dtype=images.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(channels, 1, 3, 3)
    smooth = F.conv2d(images, kernel, groups=channels)
    # Border pixels keep their values, as in PIL.
    degenerate = images.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return _blend(images, degenerate, factor)


def _autocontrast(images: torch.Tensor) -> torch.Tensor:
    low = images.amin(dim=(2, 3), keepdim=True)
    high = images.amax(dim=(2, 3), keepdim=True)
    scaled = (images - low) / (high - low).clamp(min=1e-12)
    return torch.where(high > low, scaled, images)


def _posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    masks = (0xFF << (8 - bits)) & 0xFF
    return (_levels(images) & _column(masks)).float().div(255.0)


def _photometric(name: str, images: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    if name == "auto_contrast":
        return _autocontrast(images)
    if name == "equalize":
        return equalize(images)
    if name == "invert":
        return 1.0 - images
    if name == "posterize":
        return _posterize(images, (8 - magnitude.floor()).long().clamp(4, 8))
    if name == "solarize":
        return torch.where(images >= _column(magnitude), 1.0 - images, images)
    if name == "color":
        return _blend(images, _grayscale(images), magnitude)
    if name == "contrast":
        return _blend(images, _grayscale(images).mean(dim=(1, 2, 3), keepdim=True), magnitude)
    if name == "brightness":
        return _blend(images, torch.zeros_like(images), magnitude)
    if name == "sharpness":
        return _sharpness(images, magnitude)
    raise KeyError(name)


def _affine(name: str, magnitude: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) affine_grid matrices (output -> input coordinates, in [-1, 1] units)."""
    batch = magnitude.shape[0]
    theta = torch.zeros(batch, 2, 3, device=magnitude.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if name == "rotate":
        angle = torch.deg2rad(magnitude)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), -torch.sin(angle)
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    elif name == "shear_x":
        theta[:, 0, 1] = magnitude
    elif name == "shear_y":
        theta[:, 1, 0] = magnitude
    elif name == "translate_x":
        theta[:, 0, 2] = 2 * magnitude
    elif name == "translate_y":
        theta[:, 1, 2] = 2 * magnitude
    else:
        raise KeyError(name)
    return theta


#: (name, low, high) of the magnitude drawn uniformly per sample.
PHOTOMETRIC_OPS: tuple[tuple[str, float, float], ...] = (
    ("auto_contrast", 0.0, 0.0),
    ("equalize", 0.0, 0.0),
    ("invert", 0.0, 0.0),
    ("posterize", 0.0, 4.0),
    ("solarize", 0.0, 1.0),
    ("color", 0.1, 1.9),
    ("contrast", 0.1, 1.9),
    ("brightness", 0.1, 1.9),
    ("sharpness", 0.1, 1.9),
)
GEOMETRIC_OPS: tuple[tuple[str, float, float], ...] = (
    ("rotate", -30.0, 30.0),
    ("shear_x", -0.3, 0.3),
    ("shear_y", -0.3, 0.3),
    ("translate_x", -0.1, 0.1),
    ("translate_y", -0.1, 0.1),
)


def trivial_augment(images: torch.Tensor, generator: torch.Generator, *, geometric: bool) -> torch.Tensor:
    """One TrivialAugment operation per sample (see the module docstring); the draws are made
    whichever operations are picked, so the stream does not depend on the images."""
    batch = images.shape[0]
    device = images.device
    ops = PHOTOMETRIC_OPS + (GEOMETRIC_OPS if geometric else ())
    choice = torch.randint(0, len(ops), (batch,), generator=generator, device=device)
    unit = torch.rand(batch, generator=generator, device=device)
    out = images
    geometric_theta = torch.zeros(batch, 2, 3, device=device)
    geometric_theta[:, 0, 0] = geometric_theta[:, 1, 1] = 1.0
    for index, (name, low, high) in enumerate(ops):
        magnitude = low + (high - low) * unit
        picked = choice == index
        if any(name == geometric_name for geometric_name, _, _ in GEOMETRIC_OPS):
            geometric_theta = torch.where(picked[:, None, None], _affine(name, magnitude), geometric_theta)
            continue
        out = torch.where(picked[:, None, None, None], _photometric(name, images, magnitude), out)
    if geometric:
        grid = F.affine_grid(geometric_theta, list(images.shape), align_corners=False)
        warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        is_geometric = choice >= len(PHOTOMETRIC_OPS)
        out = torch.where(is_geometric[:, None, None, None], warped, out)
    return out.clamp(0.0, 1.0)
