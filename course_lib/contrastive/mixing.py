"""Mixup and CutMix of SimCLR views, batched on the views' device, and the i-Mix loss that trains on them.

    params = draw_mix(len(v1), "mixup", alpha=1.0, height=32, width=32, generator=gen)
    loss = imix_loss(model(mix_images(v1, params)), model(v2), params, temperature=0.2)

Mixup (Zhang et al., ICLR 2018) blends image i with a partner perm[i]: lam x_i + (1 - lam) x_perm[i].
CutMix (Yun et al., ICCV 2019) pastes a rectangle of the partner instead, of area (1 - lam) H W, and
recomputes lam from the pixels actually pasted. Both were made for labels; SimCLR has none, and a
mixed view has no single positive. i-Mix (Lee et al., ICLR 2021) gives it a soft one: among the clean
second views, the mixed view of image i should pick view i with weight lam and the view of its
partner perm[i] with weight 1 - lam (a cross-entropy against that soft target).

`mix_images` mixes a whole batch in a few kernels (a per-image weight, or a mask built from coordinate
comparisons); `mix_images_reference` loops over the images with slicing, and the tests check that they
agree bit for bit. Every random number is drawn from `generator`, on its device, so a seeded generator
gives the same mix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Real

import torch
import torch.nn.functional as F

from course_lib.contrastive.colour import wide_dtype
from course_lib.contrastive.losses import validate_embeddings, validate_temperature
from course_lib.contrastive.views import draw_device

KINDS = ("mixup", "cutmix")
# Marsaglia-Tsang candidates per Gamma variate: each is accepted with probability >= 0.95 (shape >= 1),
# so all 8 are rejected with probability < 0.05^8 ~ 4e-11 (then v = 1: the variate is d, near the mode).
GAMMA_TRIES = 8


@dataclass(frozen=True)
class MixParams:
    """One mix of a batch of N images. kind: "mixup" or "cutmix"; perm: (N,) int64, the partner of each
    image (a permutation; an image may be its own partner); lam: (N,) float32 in [0, 1], the weight of
    the image's own content; boxes: (N, 4) int64 (top, left, height, width) in pixels, the rectangle
    pasted from the partner (CutMix), or None (mixup)."""

    kind: str
    perm: torch.Tensor
    lam: torch.Tensor
    boxes: torch.Tensor | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"MixParams: kind must be one of {KINDS}, got {self.kind!r}.")
        if not isinstance(self.perm, torch.Tensor) or self.perm.ndim != 1 or self.perm.dtype != torch.int64:
            raise ValueError("MixParams: perm must be a 1-D int64 tensor (N,), the partner of each image.")
        if not isinstance(self.lam, torch.Tensor) or self.lam.shape != self.perm.shape or not self.lam.is_floating_point():
            raise ValueError(f"MixParams: lam must be a floating tensor of shape ({len(self.perm)},), one weight per image.")
        if (self.boxes is None) != (self.kind == "mixup"):
            raise ValueError("MixParams: CutMix needs boxes (N, 4) and mixup takes none; build it with draw_mix.")
        if self.boxes is not None and (self.boxes.shape != (len(self.perm), 4) or self.boxes.dtype != torch.int64):
            raise ValueError(f"MixParams: boxes must be ({len(self.perm)}, 4) int64 (top, left, height, width), "
                             f"got {tuple(self.boxes.shape)} {self.boxes.dtype}.")


def _check_draw_args(n, kind, alpha, height, width) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be a whole number of images >= 2 (an image needs a partner to mix with), got {n!r}.")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0 (lam ~ Beta(alpha, alpha)), got {alpha!r}. "
                         "Typical values: 0.2-1.0 for mixup, 1.0 for CutMix and i-Mix.")
    for name, side in (("height", height), ("width", width)):
        if isinstance(side, bool) or not isinstance(side, int) or side < 1:
            raise ValueError(f"{name} must be the image's {name} in pixels, a whole number >= 1, got {side!r}.")


def _log_gamma_variates(shape: tuple[int, ...], alpha: float, generator, device) -> torch.Tensor:
    """log of Gamma(alpha, 1) variates of `shape`, float64 (float32 on MPS), from `generator` only.

    torch.distributions.Gamma cannot take a generator, so this is Marsaglia & Tsang (ACM TOMS 2000), the
    method of numpy and of torch's own sampler, batched: Gamma(alpha + 1) by rejection with GAMMA_TRIES
    candidates at once (the first accepted wins), times U^(1/alpha) (their boost, valid for any alpha > 0).
    Logs, because U^(1/alpha) underflows for small alpha and X / (X + Y) would be 0 / 0. Wide floats,
    because d - d v + d log v cancels for large alpha.
    """
    d, wide = alpha + 1 - 1 / 3, wide_dtype(torch.device(device))  # d, c: Marsaglia-Tsang for shape alpha + 1
    c = 1 / math.sqrt(9 * d)
    x = torch.randn(*shape, GAMMA_TRIES, generator=generator, device=device, dtype=wide)
    u = 1 - torch.rand(*shape, GAMMA_TRIES + 1, generator=generator, device=device, dtype=wide)  # (0, 1]: finite log
    v = (1 + c * x) ** 3
    log_v = torch.log(torch.where(v > 0, v, 1.0))
    ok = (v > 0) & (torch.log(u[..., :-1]) < 0.5 * x * x + d - d * v + d * log_v)
    first = ok.to(torch.uint8).argmax(dim=-1, keepdim=True)  # first accepted candidate (0 if none)
    log_v = torch.where(ok.any(dim=-1), log_v.gather(-1, first).squeeze(-1), 0.0)
    return math.log(d) + log_v + torch.log(u[..., -1]) / alpha  # log(d v U^(1/alpha))


def cutmix_boxes(lam: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 4) int64 boxes (top, left, h, w): sides floor(H sqrt(1 - lam)) x floor(W sqrt(1 - lam)), so the
    area is about (1 - lam) H W with the image's aspect, centred at pixel (cy, cx), clipped to the image.
    (Yun et al.'s code spans cx +- cut_w // 2, one pixel short for odd sides; this box has the full side.)
    """
    side = torch.sqrt(1 - lam.to(wide_dtype(lam.device)))  # float64 (where there is one): floor as Python's would
    cut_h, cut_w = torch.floor(height * side).long(), torch.floor(width * side).long()
    top, left = cy - cut_h // 2, cx - cut_w // 2
    bottom, right = (top + cut_h).clamp(0, height), (left + cut_w).clamp(0, width)
    top, left = top.clamp(0, height), left.clamp(0, width)
    return torch.stack([top, left, bottom - top, right - left], dim=1)


def draw_mix(n: int, kind: str, alpha: float, height: int, width: int, generator: torch.Generator | None = None,
             device: torch.device | str | None = None) -> MixParams:
    """Draw a mix of n images of height x width: partners, lam ~ Beta(alpha, alpha) per image, CutMix boxes.

    Everything is drawn from `generator`, on its device (without one: torch's global RNG on `device`,
    default CPU). For CutMix, lam is recomputed from the clipped box, 1 - box area / (H W), so it is the
    fraction of the image's own pixels that remain.
    """
    _check_draw_args(n, kind, alpha, height, width)
    dev = draw_device(generator, device)
    perm = torch.randperm(n, generator=generator, device=dev)
    log_g = _log_gamma_variates((n, 2), float(alpha), generator, dev)  # (N, 2)
    lam = torch.sigmoid(log_g[:, 0] - log_g[:, 1]).float()  # X / (X + Y) ~ Beta(alpha, alpha), from logs
    if kind == "mixup":
        return MixParams(kind, perm, lam)
    cy = torch.randint(0, height, (n,), generator=generator, device=dev)
    cx = torch.randint(0, width, (n,), generator=generator, device=dev)
    boxes = cutmix_boxes(lam, cy, cx, height, width)
    lam = (1 - (boxes[:, 2] * boxes[:, 3]).to(wide_dtype(dev)) / (height * width)).float()
    return MixParams(kind, perm, lam, boxes)


def _check_params(params, n: int) -> None:
    if not isinstance(params, MixParams):
        raise TypeError(f"params must be the MixParams from draw_mix, got {type(params).__name__}.")
    if len(params.perm) != n:
        raise ValueError(f"params were drawn for {len(params.perm)} images, the batch has {n}: "
                         "call draw_mix(len(batch), ...) for this batch.")


def _check_mix_inputs(x, params: MixParams) -> MixParams:
    """Validate x against params; return params on x's device."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of images (N, C, H, W), got {type(x).__name__}.")
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"x must be floating images of shape (N, C, H, W), got {tuple(x.shape)} {x.dtype}; "
                         "convert uint8 images with x.float() / 255.")
    _check_params(params, len(x))
    if params.boxes is not None:
        top, left, h, w = params.boxes.unbind(1)
        # One host-device sync on a GPU: boxes drawn for another image size would silently paste the wrong area.
        if not bool(((top >= 0) & (left >= 0) & (top + h <= x.shape[2]) & (left + w <= x.shape[3])).all()):
            raise ValueError(f"CutMix boxes reach outside the {x.shape[2]}x{x.shape[3]} images: they were drawn for "
                             "another size. Call draw_mix with height=x.shape[2], width=x.shape[3].")
    # No-ops when the params were drawn on x's device.
    return replace(params, perm=params.perm.to(x.device), lam=params.lam.to(x.device),
                   boxes=None if params.boxes is None else params.boxes.to(x.device))


def mix_images(x: torch.Tensor, params: MixParams) -> torch.Tensor:
    """Mix a batch at once: (N, C, H, W) floating -> same shape and dtype, on x.device.

    Mixup: lam_i x_i + (1 - lam_i) x_perm[i]. CutMix: x_i with the pixels inside box i taken from x_perm[i].
    """
    p = _check_mix_inputs(x, params)
    partner = x[p.perm]                                              # (N, C, H, W)
    if p.kind == "mixup":
        lam = p.lam.to(x.dtype).view(-1, 1, 1, 1)                    # (N, 1, 1, 1), in x's dtype as in the reference
        # lam x + (1 - lam) partner in two batch-sized buffers instead of four, with the reference's roundings:
        # on a CPU each fresh buffer can cost more in page faults than the arithmetic (benchmarks/mixing.py).
        return (x * lam).add_(partner.mul_(1 - lam))
    top, left, h, w = p.boxes.unbind(1)                              # (N,) each
    rows, cols = (torch.arange(side, device=x.device) for side in x.shape[2:])
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])   # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None]) # (N, W)
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]     # (N, 1, H, W)
    if torch.is_grad_enabled() and x.requires_grad:
        return torch.where(mask, partner, x)  # autograd cannot record a write into `partner`
    return torch.where(mask, partner, x, out=partner)  # reuse the gathered batch: one fresh buffer, not two


def mix_images_reference(x: torch.Tensor, params: MixParams) -> torch.Tensor:
    """`mix_images` one image at a time with slicing: the obvious version, to test the batched one against."""
    p = _check_mix_inputs(x, params)
    out = x.clone()
    for i in range(len(x)):
        j = int(p.perm[i])
        if p.kind == "mixup":
            lam = p.lam[i].to(x.dtype)
            out[i] = lam * x[i] + (1 - lam) * x[j]
        else:
            top, left, h, w = (int(v) for v in p.boxes[i])
            out[i, :, top:top + h, left:left + w] = x[j, :, top:top + h, left:left + w]
    return out


def imix_loss(z_mixed: torch.Tensor, z_keys: torch.Tensor, params: MixParams, temperature: float = 0.2) -> torch.Tensor:
    """The i-Mix loss (Lee et al., ICLR 2021), N-pair form: a scalar.

    z_mixed: (N, D) projections of the mixed first views; z_keys: (N, D) projections of the clean second
    views (L2-normalised inside). Row i's logits are its cosine similarities to every key / temperature;
    its soft target is lam_i on key i and 1 - lam_i on key perm[i]. With every lam = 1 it is InfoNCE.
    """
    temperature = validate_temperature(temperature)
    validate_embeddings(z_mixed, "z_mixed", paired=False)
    validate_embeddings(z_keys, "z_keys", paired=False)
    if z_mixed.shape != z_keys.shape:
        raise ValueError(f"z_mixed and z_keys must have the same shape (N, D), got {tuple(z_mixed.shape)} and "
                         f"{tuple(z_keys.shape)}: row i of each must come from image i.")
    _check_params(params, len(z_mixed))
    perm, lam = params.perm.to(z_mixed.device), params.lam.to(z_mixed.device, z_mixed.dtype)
    logits = F.normalize(z_mixed, dim=1) @ F.normalize(z_keys, dim=1).T / temperature   # (N, N)
    log_p = logits.log_softmax(dim=1)                                                   # (N, N)
    own = log_p.diagonal()                                                               # (N,) log p(key i)
    partner = log_p.gather(1, perm[:, None]).squeeze(1)                                  # (N,) log p(key perm[i])
    return -(lam * own + (1 - lam) * partner).mean()


__all__ = ["MixParams", "draw_mix", "cutmix_boxes", "mix_images", "mix_images_reference", "imix_loss"]
