"""Views of drawings (Omniglot): small random affine transforms, batched on the device.

Colour jitter means nothing for a black-and-white stroke, and a large crop can cut a character into a
different one; what keeps a handwritten character itself is a small change of pose: a rotation of a
few degrees, a little shear, a scale and a shift, as a different hand would draw it.

    views = affine_views(x, AffineViewConfig(), generator)     # x: (B, 1, 28, 28) float in [0, 1]

Every image gets its own transform, drawn on the generator's device; one `affine_grid` and one
`grid_sample` apply all of them at once. `affine_views_reference` applies the same transforms image by
image with torchvision's `affine` (the per-image way), and the tests hold the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AffineViewConfig:
    """Ranges of the random affine transform, each drawn uniformly per image (0 switches one off)."""

    degrees: float = 15.0            # rotation in [-degrees, degrees], clockwise positive
    translate: float = 0.1           # shift in [-translate, translate] x the image side, per axis
    scale: tuple[float, float] = (0.8, 1.2)
    shear: float = 10.0              # shear parallel to x in [-shear, shear] degrees

    def __post_init__(self):
        if not (0 <= self.degrees <= 180 and 0 <= self.translate <= 1 and 0 <= self.shear < 90):
            raise ValueError(f"expected 0 <= degrees <= 180, 0 <= translate <= 1 and 0 <= shear < 90; got degrees="
                             f"{self.degrees}, translate={self.translate}, shear={self.shear}.")
        low, high = self.scale
        if not 0 < low <= high:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, e.g. (0.8, 1.2); got {self.scale}.")


def sample_affine(n: int, config: AffineViewConfig, generator: torch.Generator | None = None,
                  device=None) -> dict[str, torch.Tensor]:
    """Parameters of n random transforms, each (n,) float32: angle and shear in degrees, translations in
    fractions of the image side, scale. Drawn on the generator's device (the same draws on any device)."""
    where = generator.device if generator is not None else device
    u = torch.rand(5, n, generator=generator, device=where) * 2 - 1                   # (5, n) in [-1, 1)
    low, high = config.scale
    params = {"angle": u[0] * config.degrees, "tx": u[1] * config.translate, "ty": u[2] * config.translate,
              "scale": low + (u[3] + 1) / 2 * (high - low), "shear": u[4] * config.shear}
    return {k: v.to(device) if device is not None else v for k, v in params.items()}


def affine_theta(params: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) matrices for `F.affine_grid` (align_corners=False): for each output pixel, where to read.

    The inverse of translate . rotate . scale . shear about the image centre, as torchvision's affine
    builds it, written for a batch and moved to the [-1, 1] coordinates of `affine_grid`.
    """
    rot, sx = torch.deg2rad(params["angle"]), torch.deg2rad(params["shear"])
    a, b = torch.cos(rot), -torch.cos(rot) * torch.tan(sx) - torch.sin(rot)      # rotate . shear, det = 1
    c, d = torch.sin(rot), -torch.sin(rot) * torch.tan(sx) + torch.cos(rot)
    s = params["scale"]
    inv = torch.stack([d, -b, -c, a], dim=1).view(-1, 2, 2) / s[:, None, None]  # (n, 2, 2), pixel units
    shift = torch.stack([params["tx"] * width, params["ty"] * height], dim=1)    # (n, 2) pixels
    offset = -(inv @ shift[:, :, None]).squeeze(2)                               # (n, 2): inv applied to -shift
    # Pixel coordinates about the centre -> [-1, 1]: x / (w / 2), y / (h / 2).
    to_unit = torch.tensor([2.0 / width, 2.0 / height], device=inv.device, dtype=inv.dtype)
    linear = inv * to_unit[None, :, None] / to_unit[None, None, :]
    return torch.cat([linear, (offset * to_unit)[:, :, None]], dim=2)


def affine_views(x: torch.Tensor, config: AffineViewConfig = AffineViewConfig(),
                 generator: torch.Generator | None = None, params: dict[str, torch.Tensor] | None = None
                 ) -> torch.Tensor:
    """One random view of each image: x (B, C, H, W) float in [0, 1] -> (B, C, H, W), bilinear, empty
    (0) outside the drawing. params: the transforms to apply (from `sample_affine`) instead of new draws."""
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be float images (B, C, H, W), e.g. Omniglot (B, 1, 28, 28); got {x.dtype} "
                         f"{tuple(x.shape)}. For one image, use x[None].")
    if params is None:
        params = sample_affine(len(x), config, generator, x.device)
    theta = affine_theta({k: v.to(x.device, torch.float32) for k, v in params.items()}, *x.shape[-2:])
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affine_views_reference(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The same views, one image at a time with torchvision's `affine` (slow; for tests and reading)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    height, width = x.shape[-2:]
    out = []
    for i, image in enumerate(x):
        p = {k: float(v[i]) for k, v in params.items()}
        out.append(TF.affine(image, angle=p["angle"], translate=[p["tx"] * width, p["ty"] * height],
                             scale=p["scale"], shear=[p["shear"], 0.0], interpolation=InterpolationMode.BILINEAR))
    return torch.stack(out)


__all__ = ["AffineViewConfig", "affine_theta", "affine_views", "affine_views_reference", "sample_affine"]
