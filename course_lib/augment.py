"""SimCLR views: the torchvision per-image reference and a batched version that runs on the data's device.

    v1 = simclr_views(x, config, generator=gen)   # x (B, 3, H, W) uint8 or float in [0, 1], any device
    v2 = simclr_views(x, config, generator=gen)   # call twice for the positive pair

The SimCLR recipe for CIFAR-10 (Chen et al. 2020, appendix B.9): random resized crop to 32 (area
8%-100%, aspect 3/4-4/3), horizontal flip p=0.5, colour jitter (brightness, contrast, saturation
0.4, hue 0.1) with p=0.8 in a random order, grayscale with p=0.2.

`reference_views` applies exactly that with torchvision transforms v2, one image at a time, as a
DataLoader worker would. `simclr_views` draws the same parameters, independently per image, from the
same distributions (crop boxes by torchvision's own rule, jitter order a random permutation per
image), and applies them to the whole batch at once, on the batch's device:
- crop + flip: one sampling grid per image (the affine grid of the crop box, mirrored for a flip) and
  one `F.grid_sample` for the batch;
- colour, impl="fused" (default): brightness, contrast, saturation, hue and grayscale are all linear
  in the pixel (contrast adds the mean gray level, known from the image's mean colour), so each
  image's whole colour pipeline, in its own random order, is composed into one 3x3 matrix plus
  offset on tiny per-image matrices and applied with one `bmm` and one clamp. Hue is the YIQ rotation
  (rotate the chroma plane, keep luma), because it is linear, which is what lets it fold into that
  matrix; torchvision shifts hue in HSV, which is not linear. What fused drops: torchvision's clamp
  after every step, and the exact HSV hue; tests bound the difference.
- colour, impl="exact": torchvision's maths step by step, with its clamps and a vectorised
  RGB -> HSV -> RGB hue; given the same parameters it equals torchvision's output to float
  precision. About 3-5x slower on a CPU; use it to check the fused path or to match torchvision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601 luma weights, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class ViewConfig:
    """The distribution of one SimCLR view; switches and strengths are for the notebook-02 explorer."""

    size: int = 32  # output side, pixels
    scale: tuple[float, float] = (0.08, 1.0)  # crop area, as a fraction of the image area
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio width/height, sampled log-uniformly
    flip_p: float = 0.5  # probability of a horizontal flip
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue strength
    jitter_p: float = 0.8  # probability that colour jitter is applied at all
    gray_p: float = 0.2  # probability of converting to grayscale
    crop: bool = True  # False: no random crop, the whole image (the central square of a non-square one)
    flip: bool = True  # False: never flip
    color: bool = True  # False: no colour jitter
    gray: bool = True  # False: never grayscale
    strength: float = 1.0  # multiplies every jitter strength (SimCLR's colour strength knob)

    def effective(self) -> "ViewConfig":
        """The same distribution with switches folded in: off means probability 0 or the whole image."""
        b, c, s, h = (min(v * self.strength, cap) for v, cap in zip(self.jitter, (math.inf, math.inf, math.inf, 0.5)))
        return replace(
            self, scale=self.scale if self.crop else (1.0, 1.0), ratio=self.ratio if self.crop else (1.0, 1.0),
            flip_p=self.flip_p if self.flip else 0.0, jitter=(b, c, s, h),
            jitter_p=self.jitter_p if self.color else 0.0, gray_p=self.gray_p if self.gray else 0.0,
            crop=True, flip=True, color=True, gray=True, strength=1.0,
        )


def check_images(x) -> None:
    """Raise a readable error unless x is (B, 3, H, W) uint8, or floating with values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of images (B, 3, H, W), got {type(x).__name__}.")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}; add a batch dimension with "
                         "x[None] for one image, or repeat a grayscale channel 3 times.")
    if x.dtype == torch.uint8:
        return
    if not x.is_floating_point():
        raise TypeError(f"expected uint8 (0..255) or floating images in [0, 1], got dtype {x.dtype}.")
    if x.numel():
        low, high = torch.aminmax(x)
        if low < 0 or high > 1:
            raise ValueError(f"floating images must lie in [0, 1], got values in [{low.item():.3g}, {high.item():.3g}]; "
                             "divide uint8-range floats by 255 (or pass the uint8 tensor itself).")


def crop_params_from_uniforms(u_attempts: torch.Tensor, u_pos: torch.Tensor, height: int, width: int,
                              scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """torchvision's RandomResizedCrop rule, for a batch, given its uniform random numbers.

    u_attempts: (B, A, 2) uniforms in [0, 1): (area, log-ratio) for each of A attempts;
    u_pos: (B, 2) uniforms for the (top, left) position. Returns (B, 4) int64 boxes (top, left, h, w).
    Per image: the first attempt whose rounded box fits the image wins; if none does, the fallback is
    the central crop with the aspect ratio clamped to `ratio` (the whole image when it fits).
    """
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * u_attempts[..., 0].double())  # (B, A) pixels
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u_attempts[..., 1].double())  # (B, A) width / height
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # (B, A)
    first = ok.double().argmax(dim=1, keepdim=True)  # index of the first fitting attempt (0 if none)
    w, h, found = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1), ok.any(dim=1)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    w, h = torch.where(found, w, float(fw)), torch.where(found, h, float(fh))
    top = torch.where(found, torch.floor(u_pos[:, 0].double() * (height - h + 1)), float((height - fh) // 2))
    left = torch.where(found, torch.floor(u_pos[:, 1].double() * (width - w + 1)), float((width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1).long()


def random_resized_crop_params(n: int, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                               generator: torch.Generator | None = None, attempts: int = 10) -> torch.Tensor:
    """(n, 4) int64 crop boxes (top, left, h, w) drawn as torchvision's RandomResizedCrop draws them."""
    dev = generator.device if generator is not None else torch.device("cpu")
    u_attempts = torch.rand(n, attempts, 2, generator=generator, device=dev)
    u_pos = torch.rand(n, 2, generator=generator, device=dev)
    return crop_params_from_uniforms(u_attempts, u_pos, height, width, scale, ratio)


def batched_flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images x[b] (B, C, H, W) where flip[b] (B,) bool is True."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def crop_flip_grid(boxes: torch.Tensor, flip: torch.Tensor, height: int, width: int, size: int) -> torch.Tensor:
    """(B, size, size, 2) sampling grid that crops `boxes` (B, 4) (top, left, h, w), resizes to `size`, flips.

    This is `F.affine_grid` of theta = [[±w/W, 0, (2 left + w)/W - 1], [0, h/H, (2 top + h)/H - 1]]
    (align_corners=False: output pixel o of the crop reads input x = left + (o + 1/2) w / size - 1/2,
    i.e. bilinear resizing of the crop; a flip is a negative x scale). With no rotation the grid is
    separable, so it is built from one row and one column instead of a (B, size, size, 3) product.
    Coordinates are clamped to the crop's outer pixel centres, as `F.interpolate` does at the edges,
    so the result equals torchvision's `resized_crop` for crops no larger than `size` (always the
    case for CIFAR-10); larger crops are shrunk without antialiasing.
    """
    top, left, h, w = boxes.float().unbind(1)  # (B,) each, pixels
    u = (2 * torch.arange(size, device=boxes.device, dtype=torch.float32) + 1) / size - 1  # output centres in [-1, 1]
    sign = 1.0 - 2.0 * flip.float()
    gx = (sign * w / width).unsqueeze(1) * u + ((2 * left + w) / width - 1).unsqueeze(1)  # (B, size)
    gy = (h / height).unsqueeze(1) * u + ((2 * top + h) / height - 1).unsqueeze(1)
    gx = torch.maximum(torch.minimum(gx, ((2 * (left + w) - 1) / width - 1).unsqueeze(1)), ((2 * left + 1) / width - 1).unsqueeze(1))
    gy = torch.maximum(torch.minimum(gy, ((2 * (top + h) - 1) / height - 1).unsqueeze(1)), ((2 * top + 1) / height - 1).unsqueeze(1))
    grid = torch.empty(boxes.shape[0], size, size, 2, device=boxes.device)
    grid[..., 0] = gx.unsqueeze(1)  # x varies along a row
    grid[..., 1] = gy.unsqueeze(2)  # y along a column
    return grid


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, ...) luma of x (B, 3, ...)."""
    return (_GRAY[0] * x[:, 0:1]).add_(x[:, 1:2], alpha=_GRAY[1]).add_(x[:, 2:3], alpha=_GRAY[2])


def adjust_hue(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Shift the hue of x (B, 3, H, W) in [0, 1] by hue (B,) turns in [-0.5, 0.5], through HSV.

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
    k = torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1) + h6.unsqueeze(1)  # (B, 3, H, W)
    k -= 6.0 * torch.floor(k * (1.0 / 6.0))  # k mod 6, cheaper than torch.remainder here
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return (v.unsqueeze(1) - delta.unsqueeze(1) * ramp).clamp_(0.0, 1.0)


def colour_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """torchvision's ColorJitter for a batch: per image, the four adjustments in its own random order.

    x (B, 3, H, W) in [0, 1]; factors (B, 4): brightness, contrast, saturation, hue; order (B, 4) a
    permutation of 0..3 per image; apply (B,) bool: images where jitter is off are returned as they are.
    Brightness, contrast and saturation are each `clamp(a x + (1 - a) target)` with target 0, the
    mean gray level, or the gray image, so one step of all three for the whole batch is one
    `addcmul` with per-image a and target. Hue is done, on the images whose step it is, through HSV.
    """
    for step in range(4):
        op = torch.where(apply, order[:, step], torch.full_like(order[:, step], 3))  # (B,) 0 b, 1 c, 2 s, 3 hue/none
        a = torch.where(op < 3, factors.gather(1, op.clamp(max=2).view(-1, 1)).squeeze(1), torch.ones_like(factors[:, 0]))
        gray = _gray(x)  # (B, 1, H, W)
        con = ((1 - a) * (op == 1)).view(-1, 1, 1, 1)
        sat = ((1 - a) * (op == 2)).view(-1, 1, 1, 1)
        target = gray * sat + con * gray.mean(dim=(2, 3), keepdim=True)  # (B, 1, H, W); 0 for brightness
        x = torch.addcmul(target, a.view(-1, 1, 1, 1), x).clamp_(0.0, 1.0)
        hue_here = (apply & (op == 3)).nonzero().squeeze(1)
        if hue_here.numel():
            x[hue_here] = adjust_hue(x[hue_here], factors[hue_here, 3])
    return x


_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def yiq_hue_matrix(hue: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) RGB matrices rotating the chroma plane (I, Q) of YIQ by hue (B,) turns; luma is kept.

    A linear stand-in for the HSV hue shift: same turn for the same factor, same direction (red
    turns towards yellow for positive hue), exact on gray, and close elsewhere.
    """
    to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
    from_yiq = torch.linalg.inv(to_yiq).to(hue.device)  # on the CPU: a 3x3 inverse is not worth a GPU solver call
    angle = -2 * math.pi * hue.double()  # minus: YIQ's angle runs opposite to HSV's hue
    cos, sin, zero, one = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle), torch.ones_like(angle)
    rot = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=1).view(-1, 3, 3)
    return (from_yiq @ rot @ to_yiq.to(hue.device)).float()


def colour_affine(factors: torch.Tensor, order: torch.Tensor, apply: torch.Tensor, gray: torch.Tensor,
                  mean_rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole colour pipeline of each image as one affine map: (M (B, 3, 3), o (B, 3)), pixel -> M pixel + o.

    Brightness (b I), saturation (s I + (1 - s) 1 w^T), hue (a YIQ rotation) and grayscale (1 w^T)
    are linear; contrast adds (1 - c) times the mean gray level, which for a linear pipeline is
    w . (M mean_rgb + o), so it needs only the image's mean colour mean_rgb (B, 3). The steps are
    composed in each image's own random order as (B, 4, 4) homogeneous matrices: no pass over pixels.
    Intermediate clamping (torchvision clamps after each step) is the one thing this drops.
    """
    n, dev = factors.shape[0], factors.device
    luma = torch.tensor(_GRAY, device=dev)
    eye4 = torch.eye(4, device=dev)
    # Homogeneous 4x4 maps [[M, o], [0, 1]]; candidates per image: 0 brightness, 1 contrast (its offset
    # is filled in at its step), 2 saturation, 3 hue, 4 nothing (jitter off for this image).
    b, c, s = (factors[:, k].view(-1, 1, 1) for k in range(3))
    cand = eye4.repeat(n, 5, 1, 1)  # (B, 5, 4, 4)
    cand[:, 0, :3, :3] = b * torch.eye(3, device=dev)
    cand[:, 1, :3, :3] = c * torch.eye(3, device=dev)
    cand[:, 2, :3, :3] = s * torch.eye(3, device=dev) + (1 - s) * luma.expand(3, 3)  # each channel -> mix with luma
    cand[:, 3, :3, :3] = yiq_hue_matrix(factors[:, 3])
    rows = torch.arange(n, device=dev)
    mean_h = torch.cat([mean_rgb, torch.ones(n, 1, device=dev)], dim=1).unsqueeze(2)  # (B, 4, 1)
    affine = eye4.expand(n, 4, 4)
    for step in range(4):
        op = torch.where(apply, order[:, step], torch.full_like(order[:, step], 4))
        step_map = cand[rows, op]  # (B, 4, 4): this step's map for each image
        mean_gray = (affine[:, :3] @ mean_h).squeeze(2) @ luma  # (B,) mean gray level before this step
        step_map[:, :3, 3] += ((op == 1) * (1 - factors[:, 1]) * mean_gray).unsqueeze(1)  # contrast's offset
        affine = step_map @ affine
    to_gray = torch.where(gray.view(-1, 1, 1), luma.expand(3, 3), torch.eye(3, device=dev))  # (B, 3, 3)
    return to_gray @ affine[:, :3, :3], (to_gray @ affine[:, :3, 3:]).squeeze(2)


def draw_view_params(n: int, height: int, width: int, config: ViewConfig = ViewConfig(),
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Every random choice for n views, on the generator's device (CPU by default).

    boxes (n, 4) int64, flip (n,) bool, jitter (n,) bool, factors (n, 4) float, order (n, 4) int64,
    gray (n,) bool. Factors are uniform on [max(0, 1 - s), 1 + s] (brightness, contrast, saturation)
    and [-h, h] (hue), as in torchvision.
    """
    cfg = config.effective()
    dev = generator.device if generator is not None else torch.device("cpu")
    boxes = random_resized_crop_params(n, height, width, cfg.scale, cfg.ratio, generator)
    u = torch.rand(n, 7, generator=generator, device=dev)
    low = torch.tensor([max(0.0, 1 - s) for s in cfg.jitter[:3]] + [-cfg.jitter[3]], device=dev)
    high = torch.tensor([1 + s for s in cfg.jitter[:3]] + [cfg.jitter[3]], device=dev)
    factors = low + (high - low) * u[:, 3:7]
    order = torch.rand(n, 4, generator=generator, device=dev).argsort(dim=1)  # a uniform permutation per image
    return {"boxes": boxes, "flip": u[:, 0] < cfg.flip_p, "jitter": u[:, 1] < cfg.jitter_p, "factors": factors,
            "order": order, "gray": u[:, 2] < cfg.gray_p}


def apply_view_params(x: torch.Tensor, params: dict[str, torch.Tensor], size: int, impl: str = "fused") -> torch.Tensor:
    """Apply drawn parameters to images x (B, 3, H, W) uint8 or float in [0, 1]: (B, 3, size, size) float32.

    impl="fused": crop + flip in one `grid_sample`, then all colour operations as one per-image
    affine map (`colour_affine`, YIQ hue) and one clamp: a handful of kernels, the fast default.
    impl="exact": colour step by step with torchvision's clamps and HSV hue; given the same
    parameters it equals torchvision's output to float precision, and costs about 5x more on a CPU.
    """
    check_images(x)
    if impl not in ("fused", "exact"):
        raise ValueError(f"impl must be 'fused' or 'exact', got {impl!r}.")
    p = {k: v.to(x.device) for k, v in params.items()}
    scale = 1 / 255 if x.dtype == torch.uint8 else 1.0  # uint8 is sampled as 0..255 and scaled by the colour map
    grid = crop_flip_grid(p["boxes"], p["flip"], x.shape[2], x.shape[3], size)
    source = x.float()
    # A fresh float copy of the right shape is free after sampling: the colour map writes its output
    # there instead of into a new buffer (fewer large allocations: on a CPU, each costs page faults).
    spare = source if source is not x and source.shape[2:] == (size, size) else None
    x = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (B, 3, S, S)
    del grid, source
    n = x.shape[0]
    if impl == "fused":
        m, o = colour_affine(p["factors"], p["order"], p["jitter"], p["gray"], x.mean(dim=(2, 3)) * scale)
        out = spare.view(n, 3, size * size) if spare is not None else None
        x = torch.bmm(m * scale, x.view(n, 3, size * size), out=out).add_(o.unsqueeze(2)).clamp_(0.0, 1.0)
        x = x.view(n, 3, size, size)
    else:
        x = colour_jitter(x * scale if scale != 1.0 else x, p["factors"], p["order"], p["jitter"])
        gray = p["gray"].nonzero().squeeze(1)
        if gray.numel():
            x[gray] = _gray(x[gray]).expand(-1, 3, -1, -1)
    return x


def simclr_views(x: torch.Tensor, config: ViewConfig = ViewConfig(), generator: torch.Generator | None = None,
                 impl: str = "fused") -> torch.Tensor:
    """One SimCLR view of every image, batched: (B, 3, size, size) float32 in [0, 1] on x.device.

    x: (B, 3, H, W) uint8 or float in [0, 1], any device. Parameters are drawn per image from
    `generator` (on its device; None: torch's global CPU generator), so a seeded generator gives the
    same views. Call twice for a positive pair. impl: "fused" (default, fast) or "exact" (torchvision's
    clamps and HSV hue), see `apply_view_params`.
    """
    check_images(x)
    if x.shape[0] == 0:
        return torch.zeros(0, 3, config.size, config.size, device=x.device)
    params = draw_view_params(x.shape[0], x.shape[2], x.shape[3], config, generator)
    return apply_view_params(x, params, config.size, impl)


def reference_transform(config: ViewConfig = ViewConfig()):
    """The torchvision transforms v2 pipeline for one image (3, H, W) -> float32 (3, size, size)."""
    from torchvision.transforms import v2

    cfg = config.effective()
    b, c, s, h = cfg.jitter
    return v2.Compose([
        v2.ToDtype(torch.float32, scale=True),  # float first, so no uint8 rounding between colour ops
        v2.RandomResizedCrop(cfg.size, scale=cfg.scale, ratio=cfg.ratio, antialias=True),
        v2.RandomHorizontalFlip(p=cfg.flip_p),
        v2.RandomApply([v2.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h)], p=cfg.jitter_p),
        v2.RandomGrayscale(p=cfg.gray_p),
    ])


def reference_views(x: torch.Tensor, config: ViewConfig = ViewConfig(), generator: torch.Generator | None = None,
                    ) -> torch.Tensor:
    """One view of every image with torchvision v2, image by image: same contract as `simclr_views`.

    torchvision draws from torch's global generator; with `generator`, the draws happen inside
    `torch.random.fork_rng` seeded from it, so results are reproducible and global state is untouched.
    """
    check_images(x)
    transform = reference_transform(config)
    if len(x) == 0:
        return torch.zeros(0, 3, config.size, config.size, device=x.device)
    if generator is None:
        return torch.stack([transform(img) for img in x])
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([transform(img) for img in x])


__all__ = ["ViewConfig", "check_images", "simclr_views", "reference_views", "reference_transform", "draw_view_params",
           "apply_view_params", "random_resized_crop_params", "crop_params_from_uniforms", "batched_flip",
           "crop_flip_grid", "adjust_hue", "colour_jitter", "colour_affine", "yiq_hue_matrix"]
