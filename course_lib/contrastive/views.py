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
- colour: `course_lib.contrastive.colour`, impl="fused" (default: each image's jitter and grayscale folded into one
  affine colour map, YIQ hue, one clamp) or impl="exact" (torchvision's steps, clamps and HSV hue).

Randomness: every parameter is drawn from `generator`, on the generator's device, so a seeded
generator gives the same views. For data on a GPU, pass a generator on that GPU: the parameters are
then drawn where they are used, and a call on uint8 images runs without a host-device copy or sync
(float images cost one sync, for the [0, 1] range check; a CPU generator also works, at the cost of
copying the few parameter tensors over).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from course_lib.contrastive.colour import colour_exact, colour_fused, wide_dtype


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

    def __post_init__(self):
        def bad(what: str) -> ValueError:
            return ValueError(f"ViewConfig: {what}.")

        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise bad(f"size must be a whole number of pixels >= 1, got {self.size!r}")
        for name, (lo, hi), top in (("scale", self.scale, 1.0), ("ratio", self.ratio, math.inf)):
            if not (0 < lo <= hi <= top):
                raise bad(f"{name} must be a range (low, high) with 0 < low <= high{' <= 1' if top == 1 else ''}, "
                          f"got {(lo, hi)}")
        for name in ("flip_p", "jitter_p", "gray_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(f"{name} is a probability, in [0, 1], got {getattr(self, name)!r}")
        if not (all(v >= 0 for v in self.jitter) and self.jitter[3] <= 0.5 and self.strength >= 0):
            raise bad(f"jitter strengths must be >= 0 (hue at most 0.5) and strength >= 0, got {self.jitter} and "
                      f"{self.strength}")

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
        low, high = torch.aminmax(x)  # NaN propagates into both, and fails the test below
        if not bool((low >= 0) & (high <= 1)):  # one device-to-host read (a sync on a GPU), not two
            raise ValueError(f"floating images must lie in [0, 1], got values in [{low.item():.3g}, {high.item():.3g}]; "
                             "divide uint8-range floats by 255 (or pass the uint8 tensor itself), and drop images "
                             "with NaN or inf.")


def crop_sizes_from_uniforms(u_attempts: torch.Tensor, height: int, width: int, scale=(0.08, 1.0),
                             ratio=(3 / 4, 4 / 3)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The crop size of every attempt of torchvision's RandomResizedCrop, given its uniform random numbers.

    u_attempts: (B, A, 2) uniforms in [0, 1): (area, log-ratio) for each of A attempts. Per attempt, the
    target area is uniform in scale * height * width and the aspect ratio w / h log-uniform in `ratio`;
    w = round(sqrt(area * aspect)), h = round(sqrt(area / aspect)). Returns (h, w, fits): (B, A) int64,
    (B, A) int64, (B, A) bool, fits meaning 0 < w <= width and 0 < h <= height. The maths runs in
    float64 (float32 on MPS, which lacks it), so w and h round as torchvision's Python floats do.
    """
    wide = wide_dtype(u_attempts.device)
    target = height * width * (scale[0] + (scale[1] - scale[0]) * u_attempts[..., 0].to(wide))  # (B, A) pixels
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u_attempts[..., 1].to(wide))  # (B, A) width / height
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    return h, w, (w > 0) & (w <= width) & (h > 0) & (h <= height)


def crop_params_from_uniforms(u_attempts: torch.Tensor, u_pos: torch.Tensor, height: int, width: int,
                              scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """torchvision's RandomResizedCrop rule, for a batch, given its uniform random numbers.

    u_attempts: (B, A, 2) uniforms for the attempts' sizes (`crop_sizes_from_uniforms`); u_pos: (B, 2) for
    the (top, left) position. Returns (B, 4) int64 boxes (top, left, h, w): per image, the first attempt that
    fits wins; if none does, the central crop with the aspect ratio clamped to `ratio` (the whole image when
    it fits). Everything stays on the uniforms' device.
    """
    wide = wide_dtype(u_attempts.device)
    h, w, ok = crop_sizes_from_uniforms(u_attempts, height, width, scale, ratio)  # (B, A) each
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first fitting attempt (0 if none)
    w, h, found = w.gather(1, first).squeeze(1).to(wide), h.gather(1, first).squeeze(1).to(wide), ok.any(dim=1)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    w, h = torch.where(found, w, float(fw)), torch.where(found, h, float(fh))
    top = torch.where(found, torch.floor(u_pos[:, 0].to(wide) * (height - h + 1)), float((height - fh) // 2))
    left = torch.where(found, torch.floor(u_pos[:, 1].to(wide) * (width - w + 1)), float((width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1).long()


def draw_device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    """Where random numbers are drawn: on the generator's device (it can draw nowhere else), else `device`."""
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def random_resized_crop_params(n: int, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                               generator: torch.Generator | None = None, attempts: int = 10,
                               device: torch.device | str | None = None) -> torch.Tensor:
    """(n, 4) int64 crop boxes (top, left, h, w) drawn as torchvision's RandomResizedCrop draws them.

    Drawn on the generator's device; without a generator, from torch's global RNG on `device` (CPU).
    """
    dev = draw_device(generator, device)
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


def draw_view_params(n: int, height: int, width: int, config: ViewConfig = ViewConfig(),
                     generator: torch.Generator | None = None, device: torch.device | str | None = None,
                     ) -> dict[str, torch.Tensor]:
    """Every random choice for n views of (H, W) images, on the generator's device.

    Without a generator, torch's global RNG on `device` (default CPU) is used. Returns boxes (n, 4)
    int64, flip (n,) bool, jitter (n,) bool, factors (n, 4) float32, order (n, 4) int64, gray (n,)
    bool. Factors are uniform on [max(0, 1 - s), 1 + s] (brightness, contrast, saturation) and
    [-h, h] (hue), as in torchvision.
    """
    cfg = config.effective()
    dev = draw_device(generator, device)
    boxes = random_resized_crop_params(n, height, width, cfg.scale, cfg.ratio, generator, device=dev)
    u = torch.rand(n, 7, generator=generator, device=dev)
    # Column by column with Python bounds: a tensor of bounds would be a host-to-device copy on a GPU.
    bounds = [(max(0.0, 1 - s), 1 + s) for s in cfg.jitter[:3]] + [(-cfg.jitter[3], cfg.jitter[3])]
    factors = torch.stack([lo + (hi - lo) * u[:, 3 + k] for k, (lo, hi) in enumerate(bounds)], dim=1)
    order = torch.rand(n, 4, generator=generator, device=dev).argsort(dim=1)  # a uniform permutation per image
    return {"boxes": boxes, "flip": u[:, 0] < cfg.flip_p, "jitter": u[:, 1] < cfg.jitter_p, "factors": factors,
            "order": order, "gray": u[:, 2] < cfg.gray_p}


def apply_view_params(x: torch.Tensor, params: dict[str, torch.Tensor], size: int, impl: str = "fused") -> torch.Tensor:
    """Apply drawn parameters to images x (B, 3, H, W) uint8 or float in [0, 1]: (B, 3, size, size) float32.

    Crop + flip in one `grid_sample`, then colour (see `course_lib.contrastive.colour`): impl="fused" folds all
    colour operations into one per-image affine map (YIQ hue) and one clamp, the fast default;
    impl="exact" goes step by step with torchvision's clamps and HSV hue, equal to torchvision's
    output to float precision given the same parameters, and about 5x slower on a CPU.
    """
    check_images(x)
    return _apply(x, params, size, impl)


def _apply(x: torch.Tensor, params: dict[str, torch.Tensor], size: int, impl: str) -> torch.Tensor:
    """`apply_view_params` on images already checked (float checks cost a sync on a GPU: do them once)."""
    if impl not in ("fused", "exact"):
        raise ValueError(f"impl must be 'fused' or 'exact', got {impl!r}.")
    p = {k: v.to(x.device) for k, v in params.items()}  # no-op when drawn on x's device
    scale = 1 / 255 if x.dtype == torch.uint8 else 1.0  # uint8 is sampled as 0..255 and scaled by the colour map
    grid = crop_flip_grid(p["boxes"], p["flip"], x.shape[2], x.shape[3], size)
    source = x.float()
    # A fresh float copy of the right shape is free after sampling: the colour map writes its output
    # there instead of into a new buffer (fewer large allocations: on a CPU, each costs page faults).
    # Never x itself: `x.float()` of a float32 x is x, the caller's tensor.
    spare = source if source is not x and source.shape[2:] == (size, size) else None
    x = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (B, 3, S, S)
    del grid, source
    if impl == "fused":
        return colour_fused(x, p["factors"], p["order"], p["jitter"], p["gray"], scale, out=spare)
    return colour_exact(x * scale if scale != 1.0 else x, p["factors"], p["order"], p["jitter"], p["gray"])


def simclr_views(x: torch.Tensor, config: ViewConfig = ViewConfig(), generator: torch.Generator | None = None,
                 impl: str = "fused") -> torch.Tensor:
    """One SimCLR view of every image, batched: (B, 3, size, size) float32 in [0, 1] on x.device.

    x: (B, 3, H, W) uint8 or float in [0, 1], any device. Parameters are drawn per image from
    `generator`, on its device (None: torch's global RNG on x.device), so a seeded generator gives
    the same views. Call twice for a positive pair. impl: "fused" (default, fast) or "exact"
    (torchvision's clamps and HSV hue), see `apply_view_params`.
    """
    check_images(x)
    if x.shape[0] == 0:
        return torch.zeros(0, 3, config.size, config.size, device=x.device)
    params = draw_view_params(x.shape[0], x.shape[2], x.shape[3], config, generator, device=x.device)
    return _apply(x, params, config.size, impl)


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
        torch.default_generator.manual_seed(seed)   # the CPU's only: torch.manual_seed would reseed every GPU too
        return torch.stack([transform(img) for img in x])


__all__ = ["ViewConfig", "check_images", "simclr_views", "reference_views", "reference_transform", "draw_view_params",
           "apply_view_params", "random_resized_crop_params", "crop_params_from_uniforms", "crop_sizes_from_uniforms",
           "batched_flip", "crop_flip_grid", "draw_device"]
