"""The colour half of a SimCLR view, batched: colour jitter (brightness, contrast, saturation, hue) and grayscale.

Two implementations of one distribution, both per image and for a whole batch (`course_lib.contrastive.views`
draws the parameters and does the geometry):

- fused (`colour_fused`, the default): brightness, contrast, saturation, hue and grayscale are all
  linear in the pixel (contrast adds the mean gray level, known from the image's mean colour), so each
  image's whole colour pipeline, in its own random order, is composed into one 3x3 matrix plus offset
  (`colour_affine`, on tiny per-image matrices) and applied with one `bmm` and one clamp. Hue is the
  YIQ rotation (rotate the chroma plane, keep luma), because it is linear, which is what lets it fold
  into that matrix; torchvision shifts hue in HSV, which is not linear. What fused drops:
  torchvision's clamp after every step, and the exact HSV hue; tests bound the difference.
- exact (`colour_exact`): torchvision's maths step by step, with its clamps and a vectorised
  RGB -> HSV -> RGB hue (`adjust_hue`); given the same parameters it equals torchvision's output to
  float precision. Several times slower; use it to check the fused path or to match torchvision.

Parameters, for B images: factors (B, 4) float (brightness, contrast, saturation, hue), order (B, 4)
int64 (a permutation of 0..3: the order of the four steps), apply (B,) bool (jitter on), gray (B,) bool.
"""

from __future__ import annotations

import functools
import math

import torch

LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601 luma weights, as torchvision's rgb_to_grayscale
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def wide_dtype(device: torch.device) -> torch.dtype:
    """float64 for small exact parameter maths, except on Apple's MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


@functools.lru_cache(maxsize=None)
def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(luma (3,) float32, rgb -> yiq (3, 3), yiq -> rgb (3, 3) in `wide_dtype`) on `device`, made once.

    Cached because a tensor built from Python numbers on a GPU is a host-to-device copy, and each
    such copy waits for the GPU: building them on every call would stall the batched pipeline.
    """
    to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
    from_yiq = torch.linalg.inv(to_yiq)
    wide = wide_dtype(device)
    return (torch.tensor(LUMA, device=device), to_yiq.to(device, wide), from_yiq.to(device, wide))


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, ...) luma of x (B, 3, ...), same dtype."""
    return (LUMA[0] * x[:, 0:1]).add_(x[:, 1:2], alpha=LUMA[1]).add_(x[:, 2:3], alpha=LUMA[2])


def adjust_hue(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Shift the hue of x (B, 3, H, W) float in [0, 1] by hue (B,) turns in [-0.5, 0.5], through HSV.

    The same maths as torchvision (Pillow's RGB<->HSV), branch-free: with v = max, delta = max - min
    and hue h6 in sixths of a turn, channel n in (R, G, B) = (5, 3, 1) comes back as
    v - delta * clamp(min(k, 4 - k), 0, 1) where k = (n + h6) mod 6. Masks are multiplied in rather
    than chained `torch.where`s, which is about twice as fast on a CPU.
    """
    r, g, b = x.unbind(1)
    v = x.amax(dim=1)  # (B, H, W)
    delta = v - x.amin(dim=1)
    inv = 1.0 / delta.clamp_min(1e-12)  # gray pixels (delta = 0) have zero differences below: hue 0
    is_r = (v == r).float()
    is_g = (v == g).float().mul_(1.0 - is_r)
    is_b = 1.0 - is_r - is_g
    h6 = (is_r * (g - b) + is_g * (b - r) + is_b * (r - g)).mul_(inv) + 2.0 * is_g + 4.0 * is_b  # [-1, 5)
    h6 += 6.0 * hue.view(-1, 1, 1)  # the shift, in sixths of a turn
    # The channel offsets (5, 3, 1) by arange, not torch.tensor: no host-to-device copy on a GPU.
    offsets = torch.arange(5.0, 0.0, -2.0, device=x.device).view(1, 3, 1, 1)
    k = offsets + h6.unsqueeze(1)  # (B, 3, H, W)
    k -= 6.0 * torch.floor(k * (1.0 / 6.0))  # k mod 6, cheaper than torch.remainder here
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return (v.unsqueeze(1) - delta.unsqueeze(1) * ramp).clamp_(0.0, 1.0)


def colour_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """torchvision's ColorJitter for a batch: per image, the four adjustments in its own random order.

    x (B, 3, H, W) float in [0, 1], not modified; factors, order, apply as in the module docstring;
    images where jitter is off come back unchanged. Brightness, contrast and saturation are each
    `clamp(a x + (1 - a) target)` with target 0, the mean gray level, or the gray image, so one step of
    all three for the whole batch is one `addcmul` with per-image a and target. Hue is done, on the
    images whose step it is, through HSV.
    """
    for step in range(4):
        op = torch.where(apply, order[:, step], torch.full_like(order[:, step], 3))  # (B,) 0 b, 1 c, 2 s, 3 hue/none
        a = torch.where(op < 3, factors.gather(1, op.clamp(max=2).view(-1, 1)).squeeze(1), torch.ones_like(factors[:, 0]))
        gray = to_gray(x)  # (B, 1, H, W)
        con = ((1 - a) * (op == 1)).view(-1, 1, 1, 1)
        sat = ((1 - a) * (op == 2)).view(-1, 1, 1, 1)
        target = gray * sat + con * gray.mean(dim=(2, 3), keepdim=True)  # (B, 1, H, W); 0 for brightness
        x = torch.addcmul(target, a.view(-1, 1, 1, 1), x).clamp_(0.0, 1.0)  # a new tensor: the input is kept
        hue_here = (apply & (op == 3)).nonzero().squeeze(1)
        if hue_here.numel():
            x[hue_here] = adjust_hue(x[hue_here], factors[hue_here, 3])
    return x


def colour_exact(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, apply: torch.Tensor,
                 gray: torch.Tensor) -> torch.Tensor:
    """torchvision's ColorJitter then RandomGrayscale, step by step: (B, 3, H, W) float in [0, 1]."""
    x = colour_jitter(x, factors, order, apply)
    grayed = gray.nonzero().squeeze(1)
    if grayed.numel():
        x[grayed] = to_gray(x[grayed]).expand(-1, 3, -1, -1)
    return x


def yiq_hue_matrix(hue: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) float32 RGB matrices rotating the chroma plane (I, Q) of YIQ by hue (B,) turns; luma is kept.

    A linear stand-in for the HSV hue shift: same turn for the same factor, same direction (red
    turns towards yellow for positive hue), exact on gray, and close elsewhere.
    """
    _, to_yiq, from_yiq = _constants(hue.device)
    angle = -2 * math.pi * hue.to(to_yiq.dtype)  # minus: YIQ's angle runs opposite to HSV's hue
    cos, sin, zero, one = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle), torch.ones_like(angle)
    rot = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=1).view(-1, 3, 3)
    return (from_yiq @ rot @ to_yiq).float()


def colour_affine(factors: torch.Tensor, order: torch.Tensor, apply: torch.Tensor, gray: torch.Tensor,
                  mean_rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole colour pipeline of each image as one affine map: (M (B, 3, 3), o (B, 3)), pixel -> M pixel + o.

    Brightness (b I), saturation (s I + (1 - s) 1 w^T), hue (a YIQ rotation) and grayscale (1 w^T)
    are linear; contrast adds (1 - c) times the mean gray level, which for a linear pipeline is
    w . (M mean_rgb + o), so it needs only the image's mean colour mean_rgb (B, 3) in [0, 1]. The steps
    are composed in each image's own random order as (B, 4, 4) homogeneous matrices: no pass over
    pixels. Intermediate clamping (torchvision clamps after each step) is the one thing this drops.
    """
    n, dev = factors.shape[0], factors.device
    luma = _constants(dev)[0]
    eye3, eye4 = torch.eye(3, device=dev), torch.eye(4, device=dev)
    # Homogeneous 4x4 maps [[M, o], [0, 1]]; candidates per image: 0 brightness, 1 contrast (its offset
    # is filled in at its step), 2 saturation, 3 hue, 4 nothing (jitter off for this image).
    b, c, s = (factors[:, k].view(-1, 1, 1) for k in range(3))
    cand = eye4.repeat(n, 5, 1, 1)  # (B, 5, 4, 4)
    cand[:, 0, :3, :3] = b * eye3
    cand[:, 1, :3, :3] = c * eye3
    cand[:, 2, :3, :3] = s * eye3 + (1 - s) * luma.expand(3, 3)  # each channel -> mix with luma
    cand[:, 3, :3, :3] = yiq_hue_matrix(factors[:, 3])
    rows = torch.arange(n, device=dev)
    mean_h = torch.cat([mean_rgb, torch.ones(n, 1, device=dev)], dim=1).unsqueeze(2)  # (B, 4, 1)
    affine = eye4.expand(n, 4, 4)
    for step in range(4):
        op = torch.where(apply, order[:, step], torch.full_like(order[:, step], 4))
        step_map = cand[rows, op]  # (B, 4, 4): this step's map for each image (a copy: cand is untouched)
        mean_gray = (affine[:, :3] @ mean_h).squeeze(2) @ luma  # (B,) mean gray level before this step
        step_map[:, :3, 3] += ((op == 1) * (1 - factors[:, 1]) * mean_gray).unsqueeze(1)  # contrast's offset
        affine = step_map @ affine
    to_gray_map = torch.where(gray.view(-1, 1, 1), luma.expand(3, 3), eye3)  # (B, 3, 3)
    return to_gray_map @ affine[:, :3, :3], (to_gray_map @ affine[:, :3, 3:]).squeeze(2)


def colour_fused(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, apply: torch.Tensor,
                 gray: torch.Tensor, scale: float = 1.0, out: torch.Tensor | None = None) -> torch.Tensor:
    """Jitter and grayscale as one per-image affine map and one clamp: (B, 3, H, W) float32 in [0, 1].

    x (B, 3, H, W) float32 whose values times `scale` lie in [0, 1] (scale 1/255 for sampled uint8
    values: folding it into the matrix saves a pass over the pixels). out: an optional (B, 3, H, W)
    float32 buffer, not aliasing x, to write into (saves a large allocation).
    """
    n, _, h, w = x.shape
    m, o = colour_affine(factors, order, apply, gray, x.mean(dim=(2, 3)) * scale)
    flat = out.view(n, 3, h * w) if out is not None else None
    return torch.bmm(m * scale, x.reshape(n, 3, h * w), out=flat).add_(o.unsqueeze(2)).clamp_(0.0, 1.0).view(n, 3, h, w)


__all__ = ["LUMA", "adjust_hue", "colour_affine", "colour_exact", "colour_fused", "colour_jitter", "to_gray",
           "wide_dtype", "yiq_hue_matrix"]
