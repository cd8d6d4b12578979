"""Exercises of notebook 02 (views and augmentations), each checked against the library's own:

    crop_sizes             the per-attempt sizes of RandomResizedCrop (`views.crop_sizes_from_uniforms`)
    batched_flip           a left-right flip of the flagged images of a batch (`views.batched_flip`)
    batched_colour_jitter  brightness, contrast, saturation with one factor per image (`colour.colour_jitter`)

and the notebook's self-check, self_check_02.
"""

from __future__ import annotations

import itertools
import math

import torch

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.quiz import Choice, Number, self_check
from course_lib.contrastive.colour import colour_fused, colour_jitter
from course_lib.contrastive.views import batched_flip as _batched_flip
from course_lib.contrastive.views import crop_params_from_uniforms, crop_sizes_from_uniforms

__all__ = ["check_crop_sizes", "check_batched_flip", "check_batched_colour_jitter", "check_self_check_02"]

# ---------------------------------------------------------------- crop_sizes
# The learner writes fn(u_attempts (B, A, 2), height, width, scale, ratio) -> (h, w, fits), each (B, A):
# the sampling of RandomResizedCrop. Choosing the first fitting attempt, its position and the central
# fallback stay in the library (`crop_params_from_uniforms`).


def _crop_case(batch: int, attempts: int, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    return lambda g: (torch.rand(batch, attempts, 2, generator=g), height, width, scale, ratio)


def _sizes(fn, u: torch.Tensor, height: int, width: int, scale, ratio) -> tuple[torch.Tensor, ...]:
    """fn's (h, w, fits) as int64, int64, bool tensors (a diagnosis compares values, not dtypes)."""
    h, w, fits = fn(u, height, width, scale, ratio)
    return torch.as_tensor(h).long(), torch.as_tensor(w).long(), torch.as_tensor(fits).bool()


def _agrees(got: tuple, want: tuple) -> bool:
    """h and w equal in at least 98% of the attempts (a float32 rounding slip may change a few)."""
    return all((g == w).float().mean().item() >= 0.98 for g, w in zip(got[:2], want[:2]))


def _uniform_ratio_uniforms(u: torch.Tensor, ratio) -> torch.Tensor:
    """Uniforms that make the library's log-uniform draw land where a UNIFORM draw of the aspect would."""
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = ratio[0] + (ratio[1] - ratio[0]) * u[..., 1].double()
    return torch.stack([u[..., 0].double(), (aspect.log() - lo) / (hi - lo)], dim=-1)


def _half_pixel(g: torch.Generator, n: int = 64) -> tuple:
    """A 32 x 32 case whose widths lie within about 1e-6 of a half pixel: only float64 rounds them as torchvision."""
    u_ratio = torch.rand(n, generator=g)
    lo, hi = math.log(3 / 4), math.log(4 / 3)
    aspect = torch.exp(lo + (hi - lo) * u_ratio.double())
    width = torch.randint(11, 26, (n,), generator=g).double() + 0.5  # w = k + 1/2 pixels: a rounding tie
    u_area = ((width ** 2 / aspect) / 1024 - 0.08) / 0.92  # the area that gives this width, as a uniform
    return torch.stack([u_area, u_ratio.double()], dim=-1).float().unsqueeze(1), 32, 32, (0.08, 1.0), (3 / 4, 4 / 3)


def _diagnose_crop_sizes(fn, gen: torch.Generator) -> str | None:
    """Name the classic slip: the fits rule, h and w swapped, a uniform aspect ratio, the area as a fraction,
    float32 rounding."""
    probes = [(torch.rand(512, 10, 2, generator=gen), 24, 40, (0.08, 1.0), (3 / 4, 4 / 3)),
              (torch.rand(512, 10, 2, generator=gen), 4, 4, (0.005, 0.05), (3 / 4, 4 / 3)),  # some round to 0
              _half_pixel(gen)]
    got = [_sizes(fn, *probe) for probe in probes]
    want = [crop_sizes_from_uniforms(*probe) for probe in probes]
    sizes_right = [torch.equal(g[0], w[0]) and torch.equal(g[1], w[1]) for g, w in zip(got, want)]
    if all(sizes_right[:2]) and not all(torch.equal(g[2], w[2]) for g, w in zip(got[:2], want[:2])):
        return ("Your h and w are right but `fits` is not: an attempt fits when 0 < w <= width and 0 < h <= height "
                "(a crop as large as the image fits; one that rounds to 0 pixels does not).")
    u, height, width, scale, ratio = probes[0]
    if _agrees(got[0], (want[0][1], want[0][0])):
        return ("Your h and w are swapped: the aspect ratio is width / height, so w = round(sqrt(area * aspect)) "
                "and h = round(sqrt(area / aspect)).")
    if _agrees(got[0], crop_sizes_from_uniforms(_uniform_ratio_uniforms(u, ratio), height, width, scale, ratio)):
        return ("Your aspect ratio is uniform in `ratio`; it must be LOG-uniform: aspect = exp(log(ratio[0]) + "
                "(log(ratio[1]) - log(ratio[0])) * u), so that a ratio r and 1 / r are equally likely.")
    fraction = (scale[0] / (height * width), scale[1] / (height * width))
    if _agrees(got[0], crop_sizes_from_uniforms(u, height, width, fraction, ratio)):
        return ("Your crops are a few pixels at most: `scale` is a fraction of the image, so the target area is "
                "height * width * (scale[0] + (scale[1] - scale[0]) * u).")
    if _agrees(got[0], want[0]) and not sizes_right[2]:
        return ("Some sizes are off by one pixel where the exact size is half a pixel: a rounding difference. Do "
                "the maths in float64 (u_attempts.double()) so that w and h round as torchvision's Python floats do.")
    return None


register(Exercise(
    name="crop_sizes",
    reference=crop_sizes_from_uniforms,
    cases=[
        Case("CIFAR-sized, 10 attempts", _crop_case(64, 10, 32, 32)),
        Case("non-square image (24 x 40), one attempt", _crop_case(64, 1, 24, 40)),
        Case("tall image, wide ratio range: many attempts do not fit",
             _crop_case(64, 10, 40, 20, (0.3, 1.0), (1 / 4, 4))),
        Case("tiny 4 x 4 image: some crops round to 0 pixels", _crop_case(64, 10, 4, 4, (0.005, 0.05))),
        Case("uniforms at 0: the smallest area and the narrowest ratio",
             lambda g: (torch.zeros(4, 3, 2), 32, 32, (0.08, 1.0), (3 / 4, 4 / 3))),
        Case("widths within a hair of half a pixel: float64 rounding", _half_pixel),
    ],
    hints=[
        "Per attempt (all of them at once, no loop): the target area is height * width * (scale[0] + (scale[1] - "
        "scale[0]) * u_attempts[..., 0]), and the aspect ratio is drawn uniformly in LOG space from "
        "u_attempts[..., 1].",
        "aspect = exp(log(ratio[0]) + (log(ratio[1]) - log(ratio[0])) * u); w = round(sqrt(area * aspect)), "
        "h = round(sqrt(area / aspect)), in float64 (u_attempts.double()), then .long().",
        "fits = (w > 0) & (w <= width) & (h > 0) & (h <= height); return h, w, fits, each of shape (B, A).",
    ],
    diagnose=_diagnose_crop_sizes,
))


def check_crop_sizes(fn):
    """Check fn(u_attempts (B, A, 2) float, height, width, scale, ratio) -> (h, w, fits), each (B, A):
    h and w int64 crop sizes in pixels, fits bool."""
    return check("crop_sizes", fn)


# ---------------------------------------------------------------- batched_flip

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


def check_batched_flip(fn):
    """Check fn(x (B, C, H, W), flip (B,) bool) -> x with the flagged images mirrored left-right."""
    return check("batched_flip", fn)


# ---------------------------------------------------------------- batched_colour_jitter
# The learner writes fn(x (B, 3, H, W), factors (B, 3)) -> brightness, then contrast, then saturation, each
# clamped to [0, 1] as torchvision does. The reference is the library's colour_jitter with that order and a
# hue shift of 0, which is the identity (to float precision, see tests/test_exercises_02.py).

STEPS = ("brightness", "contrast", "saturation")


def _jitter_in_order(x: torch.Tensor, factors: torch.Tensor, order=(0, 1, 2)) -> torch.Tensor:
    """colour_jitter with the three steps in `order` (indices into STEPS) and no hue shift."""
    n = len(x)
    with_hue = torch.cat([factors, torch.zeros(n, 1, dtype=factors.dtype)], dim=1)  # (B, 4): hue 0
    steps = torch.tensor([*order, 3]).expand(n, 4)
    return colour_jitter(x, with_hue, steps, torch.ones(n, dtype=torch.bool))


def _colour_jitter_reference(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1]: brightness, contrast, saturation with factors (B, 3), by the library."""
    return _jitter_in_order(x, factors)


def _clamped_once(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """The same three steps composed as one affine map and clamped once, at the end (the library's fused path)."""
    n = len(x)
    with_hue = torch.cat([factors, torch.zeros(n, 1)], dim=1)
    no = torch.zeros(n, dtype=torch.bool)
    return colour_fused(x, with_hue, torch.arange(4).expand(n, 4), ~no, no)


def _colour_case(batch: int, height: int, width: int, low: float, high: float):
    return lambda g: (torch.rand(batch, 3, height, width, generator=g),
                      low + (high - low) * torch.rand(batch, 3, generator=g))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-4)


def _diagnose_colour_jitter(fn, gen: torch.Generator) -> str | None:
    """Name the classic slip: one image's factors for all, a batch-wide mean, no clamp, a clamp only at the end,
    another order of the steps."""
    x = torch.rand(6, 3, 8, 8, generator=gen)
    factors = 2 * torch.rand(6, 3, generator=gen)  # strong factors in [0, 2): the clamps matter
    got = fn(x.clone(), factors.clone())
    if _close(got, _colour_jitter_reference(x, factors[:1].expand(6, 3))):
        return ("Every image got the factors of image 0: each image has its own row of `factors`; reshape "
                "factors[:, k] to (B, 1, 1, 1) so that it broadcasts over each image's pixels.")
    one_by_one = torch.cat([fn(x[i:i + 1].clone(), factors[i:i + 1].clone()) for i in range(6)])
    if not _close(got, one_by_one):
        return ("The result for an image depends on the other images of the batch: take contrast's mean gray "
                "level per image (mean over dims (1, 2, 3) of the (B, 1, H, W) gray image), not over the batch.")
    if got.min() < 0 or got.max() > 1:
        return "Values leave [0, 1]: torchvision clamps to [0, 1] after every step."
    if _close(got, _clamped_once(x, factors)):
        return ("You clamp only once, at the end; torchvision clamps after EVERY step, which changes the "
                "next step's input (and contrast's mean).")
    for order in itertools.permutations(range(3)):
        if order != (0, 1, 2) and _close(got, _jitter_in_order(x, factors, order)):
            return (f"You applied the steps in the order {', '.join(STEPS[k] for k in order)}; the exercise's "
                    "order is brightness, contrast, saturation (the columns of `factors`).")
    return None


register(Exercise(
    name="batched_colour_jitter",
    reference=_colour_jitter_reference,
    cases=[
        Case("8 images, SimCLR-like factors in [0.6, 1.4]", _colour_case(8, 5, 7, 0.6, 1.4)),
        Case("strong factors in [0, 2]: the clamps matter", _colour_case(16, 6, 6, 0.0, 2.0)),
        Case("factors of 1 leave the images unchanged",
             lambda g: (torch.rand(4, 3, 4, 4, generator=g), torch.ones(4, 3))),
        Case("saturation 0 makes gray images, one image",
             lambda g: (torch.rand(1, 3, 9, 5, generator=g), torch.tensor([[1.2, 0.8, 0.0]]))),
    ],
    hints=[
        "Take each column as a per-image factor that broadcasts: b = factors[:, 0].view(-1, 1, 1, 1) (B, 1, 1, 1), "
        "and the same for contrast c and saturation s. No loop over images.",
        "gray(x) = 0.2989 R + 0.587 G + 0.114 B, a (B, 1, H, W) tensor (slice channels with x[:, 0:1]). Brightness: "
        "b x; contrast: c x + (1 - c) * mean gray of each image; saturation: s x + (1 - s) gray(x).",
        "Clamp to [0, 1] after each of the three steps, and recompute gray(x) from the current x before contrast and "
        "before saturation: mean gray = gray(x).mean(dim=(1, 2, 3), keepdim=True).",
    ],
    diagnose=_diagnose_colour_jitter,
    library=(colour_jitter, colour_fused),
))


def check_batched_colour_jitter(fn):
    """Check fn(x (B, 3, H, W) float32 in [0, 1], factors (B, 3) float32 (brightness, contrast, saturation))
    -> (B, 3, H, W) float32 in [0, 1], the three steps in that order, each clamped."""
    return check("batched_colour_jitter", fn)


# ---------------------------------------------------------------- self-check


def fallback_area_fraction(height: int = 20, width: int = 60) -> float:
    """The fraction of a height x width image kept by RandomResizedCrop's central fallback (default ratio)."""
    never_fits = torch.full((1, 10, 2), 0.5)
    box = crop_params_from_uniforms(never_fits, torch.zeros(1, 2), height, width, scale=(3.0, 4.0))  # 3-4x the image
    return (box[0, 2] * box[0, 3]).item() / (height * width)


check_self_check_02 = self_check("self_check_02", {
    1: Choice("b", why="crops of one image keep its colour histogram, a cheap statistic that identifies the "
                       "partner; colour jitter takes it away, so only the content is left to agree on.",
              wrong={"a": "matching by colour needs no object at all: the task gets easier, the features do not get "
                          "better.",
                     "c": "the histogram barely changes under a crop: that is why it finds the partner."}),
    2: Choice("a", why="a transform called once draws its parameters once: one box, one flip and one set of colour "
                       "factors for the whole batch (section 5 found 1 distinct view among 64).",
              wrong={"b": "a v2 transform does not draw per image on a batch tensor: it treats the batch as one "
                          "image.",
                     "c": "the 10 attempts happen inside one draw; the batch still gets one box."}),
    3: Number(lambda: (4 / 3 - 1) / (4 / 3 - 3 / 4),
              why="a uniform draw on [3/4, 4/3] is wider than tall with probability (4/3 - 1) / (4/3 - 3/4) = 4/7; "
                  "the log-uniform draw gives 1/2, because log(3/4) = -log(4/3): a ratio r and 1/r are equally "
                  "likely.",
              hint="the ratio is above 1 on the part (1, 4/3] of the interval [3/4, 4/3]: divide the lengths."),
    4: Number(fallback_area_fraction,
              why="60 / 20 = 3 is wider than 4/3, so the fallback keeps the full height, 20, and the widest allowed "
                  "width, round(20 * 4/3) = 27: 540 of 1200 pixels.",
              hint="the image is wider than ratio[1] = 4/3 allows: keep h = 20 and take w = round(h * 4/3)."),
    5: Choice("c", why="brightness, contrast and saturation are linear, but torchvision clamps to [0, 1] after each "
                       "step (and shifts hue in HSV); the fused path clamps once, so it differs where an "
                       "intermediate value left [0, 1].",
              wrong={"a": "the order is drawn per image in both paths, from the same parameters.",
                     "b": "both paths compute in float32; the difference is not rounding."}),
}, hints=["Questions 1, 2 and 5: sections 2 (the colour shortcut), 5 (the pitfall) and 4 (the fused and exact colour "
          "paths).",
          "Question 3: the probability is a ratio of interval lengths. Question 4: torchvision's fallback keeps the "
          "largest central box whose aspect ratio lies in `ratio`, with whole-pixel sides."])
