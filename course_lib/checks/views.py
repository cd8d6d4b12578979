"""Exercises of notebook 02 (views and augmentations): crop parameters and a batched flip, each checked
against the library's own (`course_lib.contrastive.views`)."""

from __future__ import annotations

import torch

from course_lib.contrastive.views import batched_flip as _batched_flip
from course_lib.contrastive.views import crop_params_from_uniforms
from course_lib.checks.framework import Case, Exercise, check, register

__all__ = ["check_random_resized_crop_params", "check_batched_flip"]


def _crop_case(batch, attempts, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    return lambda g: (torch.rand(batch, attempts, 2, generator=g), torch.rand(batch, 2, generator=g),
                      height, width, scale, ratio)


def _never_fits(g):
    # crops of 3 to 4 times the image area never fit, so every image takes the central fallback
    return (torch.full((8, 10, 2), 0.999), torch.rand(8, 2, generator=g), 32, 32, (3.0, 4.0), (3 / 4, 4 / 3))


register(Exercise(
    name="random_resized_crop_params",
    reference=crop_params_from_uniforms,
    cases=[
        Case("CIFAR-sized, 10 attempts", _crop_case(64, 10, 32, 32)),
        Case("one attempt, non-square image", _crop_case(64, 1, 24, 40)),
        Case("small crops only", _crop_case(32, 10, 32, 32, scale=(0.05, 0.2))),
        Case("no attempt fits: central fallback", _never_fits),
        Case("wide image, fallback with ratio clamp", lambda g: (torch.full((4, 10, 2), 0.999), torch.rand(4, 2, generator=g),
                                                                  20, 60, (3.0, 4.0), (3 / 4, 4 / 3))),
    ],
    hints=[
        "Per attempt: target area = H*W * (scale[0] + (scale[1]-scale[0]) * u_area); log aspect = "
        "log(ratio[0]) + (log(ratio[1]) - log(ratio[0])) * u_ratio; then w = round(sqrt(area * aspect)), "
        "h = round(sqrt(area / aspect)).",
        "An attempt is valid if 0 < w <= width and 0 < h <= height. `valid.float().argmax(dim=1)` gives the first "
        "valid attempt per image; `valid.any(dim=1)` says whether there was one. Use `gather` to pick its w and h.",
        "Position: top = floor(u_pos[:, 0] * (height - h + 1)), left = floor(u_pos[:, 1] * (width - w + 1)). Without "
        "any valid attempt, use the central crop: if width/height < ratio[0], w = width, h = round(w / ratio[0]); "
        "if > ratio[1], h = height, w = round(h * ratio[1]); else the whole image; top = (height - h) // 2, "
        "left = (width - w) // 2. Return torch.stack([top, left, h, w], 1).long(). Do the maths in float64 so "
        "rounding matches.",
    ],
))


register(Exercise(
    name="batched_flip",
    reference=_batched_flip,
    cases=[
        Case("batch of 8 RGB images", lambda g: (torch.rand(8, 3, 5, 7, generator=g),
                                                 torch.rand(8, generator=g) < 0.5), grad=True),
        Case("no image flipped", lambda g: (torch.rand(4, 3, 6, 6, generator=g), torch.zeros(4, dtype=torch.bool))),
        Case("all images flipped", lambda g: (torch.rand(4, 1, 3, 9, generator=g), torch.ones(4, dtype=torch.bool)), grad=True),
    ],
    hints=[
        "No Python loop: compute the mirrored batch once with `x.flip(-1)` (the last dimension is the width).",
        "Choose per image with `torch.where(condition, a, b)`; reshape flip (B,) to (B, 1, 1, 1) so it broadcasts.",
    ],
))


def check_random_resized_crop_params(fn):
    """Check fn(u_attempts (B, A, 2), u_pos (B, 2), height, width, scale, ratio) -> (B, 4) int64 boxes."""
    return check("random_resized_crop_params", fn)


def check_batched_flip(fn):
    """Check fn(x (B, C, H, W), flip (B,) bool) -> x with the flagged images mirrored left-right."""
    return check("batched_flip", fn)
