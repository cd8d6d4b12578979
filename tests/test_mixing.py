"""course_lib.contrastive.mixing: batched mixing against the per-image reference, the Beta draws, the CutMix
boxes, and the i-Mix loss against an independent cross-entropy (value and gradient, float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.contrastive.losses import info_nce
from course_lib.contrastive.mixing import (
    MixParams, cutmix_boxes, draw_mix, imix_loss, mix_images, mix_images_reference,
)

SHAPES = [(2, 3, 32, 32), (5, 3, 17, 29), (8, 1, 32, 7), (16, 3, 1, 9)]  # N = 2, odd and non-square sides


def _views(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_equals_reference_bit_for_bit(kind, shape, seed):
    x = _views(shape, seed)
    g = torch.Generator().manual_seed(seed)
    p = draw_mix(shape[0], kind, 1.0, shape[2], shape[3], generator=g)
    assert torch.equal(mix_images(x, p), mix_images_reference(x, p))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_batched_equals_reference_in_other_dtypes(dtype):
    x = _views((6, 3, 12, 10), 3).to(dtype)
    for kind in ("mixup", "cutmix"):
        p = draw_mix(6, kind, 0.4, 12, 10, generator=torch.Generator().manual_seed(5))
        out = mix_images(x, p)
        assert out.dtype == dtype and torch.equal(out, mix_images_reference(x, p))


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_seeded_generator_reproduces_and_params_are_valid(kind):
    a = draw_mix(64, kind, 0.3, 32, 24, generator=torch.Generator().manual_seed(7))
    b = draw_mix(64, kind, 0.3, 32, 24, generator=torch.Generator().manual_seed(7))
    c = draw_mix(64, kind, 0.3, 32, 24, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.perm, b.perm) and torch.equal(a.lam, b.lam)
    assert not torch.equal(a.lam, c.lam)
    assert a.perm.dtype == torch.int64 and torch.equal(a.perm.sort().values, torch.arange(64))
    assert a.lam.dtype == torch.float32 and a.lam.shape == (64,)
    assert bool(((a.lam >= 0) & (a.lam <= 1)).all())
    if kind == "cutmix":
        assert torch.equal(a.boxes, b.boxes) and a.boxes.dtype == torch.int64
        top, left, h, w = a.boxes.unbind(1)
        assert bool(((top >= 0) & (left >= 0) & (top + h <= 32) & (left + w <= 24)).all())
    else:
        assert a.boxes is None


@pytest.mark.parametrize("alpha", [0.05, 0.2, 1.0, 4.0])
def test_mixup_lam_is_beta_alpha_alpha(alpha):
    """Largest gap between the empirical CDF of 20000 draws and the Beta(alpha, alpha) CDF, on a grid:
    0.02 is ~2x the 1% Kolmogorov-Smirnov critical value. (A grid, not the sample points: for small alpha
    many draws round to exactly 0.0 or 1.0 in float32, and ties at the sample points would inflate the gap.)"""
    special = pytest.importorskip("scipy.special")
    lam = draw_mix(20000, "mixup", alpha, 8, 8, generator=torch.Generator().manual_seed(0)).lam.double().sort().values
    grid = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    empirical = torch.searchsorted(lam, grid, right=True) / len(lam)  # fraction of draws <= each grid point
    gap = (empirical - torch.from_numpy(special.betainc(alpha, alpha, grid.numpy()))).abs().max()
    assert gap < 0.02, f"CDF gap {gap:.4f} to Beta({alpha}, {alpha})"


def test_tiny_alpha_gives_lam_at_the_ends_without_nan():
    # Beta(1e-3, 1e-3) puts ~0.7% of its mass in [0.001, 0.999]; X / (X + Y) in float32 would be 0 / 0 here.
    lam = draw_mix(1000, "mixup", 1e-3, 4, 4, generator=torch.Generator().manual_seed(0)).lam
    assert torch.isfinite(lam).all() and ((lam < 1e-3) | (lam > 1 - 1e-3)).float().mean() > 0.98


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (9, 3, 13, 31)])
def test_cutmix_lam_is_the_fraction_of_own_pixels(shape):
    n, c, h, w = shape
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(shape) / n  # image i is the constant i / n
    for seed in range(4):
        p = draw_mix(n, "cutmix", 1.0, h, w, generator=torch.Generator().manual_seed(seed))
        out = mix_images(x, p)
        own = (out == x).all(dim=1).double().mean(dim=(1, 2))  # (N,) fraction of pixels still the image's own
        moved = p.perm != torch.arange(n)
        assert torch.allclose(own[moved], p.lam[moved].double(), atol=1e-7, rtol=0)
        pasted = out[moved] == x[p.perm[moved]]
        assert torch.equal(pasted.all(dim=1).sum(dim=(1, 2)), (p.boxes[moved, 2] * p.boxes[moved, 3]))
        assert torch.equal(out[~moved], x[~moved])


def test_cutmix_boxes_geometry():
    lam = torch.tensor([0.75, 0.75, 1.0, 0.0])
    boxes = cutmix_boxes(lam, torch.tensor([16, 0, 5, 16]), torch.tensor([8, 15, 3, 8]), 32, 16)
    # sqrt(1 - 0.75) = 1/2: a 16 x 8 box; the same, clipped at the top-right corner; empty; the whole image.
    assert boxes.tolist() == [[8, 4, 16, 8], [0, 11, 8, 5], [5, 3, 0, 0], [0, 0, 32, 16]]


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixing_leaves_the_input_alone(kind):
    x = _views((4, 3, 8, 8), 6)
    before = x.clone()
    mix_images(x, draw_mix(4, kind, 1.0, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(x, before)


def test_mixup_with_lam_one_is_identity_and_zero_is_partner():
    x = _views((5, 3, 6, 7), 0)
    perm = torch.tensor([1, 2, 3, 4, 0])
    assert torch.equal(mix_images(x, MixParams("mixup", perm, torch.ones(5))), x)
    assert torch.equal(mix_images(x, MixParams("mixup", perm, torch.zeros(5))), x[perm])


def _imix_independent(zm, zk, perm, lam, t):
    logits = F.normalize(zm, dim=1) @ F.normalize(zk, dim=1).T / t
    own = F.cross_entropy(logits, torch.arange(len(zm)), reduction="none")
    other = F.cross_entropy(logits, perm, reduction="none")
    return (lam * own + (1 - lam) * other).mean()


@pytest.mark.parametrize("n,d,seed", [(2, 3, 0), (7, 5, 1), (16, 8, 2)])
def test_imix_loss_value_and_gradient(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    zm = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    zk = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    p = draw_mix(n, "mixup", 1.0, 4, 4, generator=g)
    ours = imix_loss(zm, zk, p, 0.3)
    ref = _imix_independent(zm, zk, p.perm, p.lam.double(), 0.3)
    assert ours.dtype == torch.float64 and torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ours, (zm, zk)), torch.autograd.grad(ref, (zm, zk))):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_imix_loss_with_lam_one_is_info_nce():
    g = torch.Generator().manual_seed(0)
    zm, zk = torch.randn(10, 6, generator=g, dtype=torch.float64), torch.randn(10, 6, generator=g, dtype=torch.float64)
    p = MixParams("mixup", torch.randperm(10, generator=g), torch.ones(10))
    assert torch.allclose(imix_loss(zm, zk, p, 0.5), info_nce(zm, zk, 0.5), rtol=1e-12, atol=0)


@pytest.mark.parametrize("call,error,match", [
    (lambda: draw_mix(1, "mixup", 1.0, 8, 8), ValueError, "n must be .* >= 2"),
    (lambda: draw_mix(4, "mixer", 1.0, 8, 8), ValueError, "kind must be one of"),
    (lambda: draw_mix(4, "mixup", 0.0, 8, 8), ValueError, "alpha must be a finite number > 0"),
    (lambda: draw_mix(4, "mixup", float("nan"), 8, 8), ValueError, "alpha must be a finite number > 0"),
    (lambda: draw_mix(4, "cutmix", 1.0, 0, 8), ValueError, "height must be"),
    (lambda: draw_mix(4, "cutmix", 1.0, 8, 2.5), ValueError, "width must be"),
    (lambda: MixParams("cutmix", torch.arange(3), torch.ones(3)), ValueError, "CutMix needs boxes"),
    (lambda: MixParams("mixup", torch.arange(3), torch.ones(2)), ValueError, "lam must be"),
    (lambda: mix_images(torch.rand(4, 3, 8), draw_mix(4, "mixup", 1.0, 8, 8)), ValueError, r"\(N, C, H, W\)"),
    (lambda: mix_images(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), draw_mix(4, "mixup", 1.0, 8, 8)), ValueError,
     "x.float"),
    (lambda: mix_images(torch.rand(5, 3, 8, 8), draw_mix(4, "mixup", 1.0, 8, 8)), ValueError, "drawn for 4 images"),
    (lambda: mix_images(torch.rand(4, 3, 8, 8), MixParams("cutmix", torch.arange(4), torch.ones(4),
                                                          torch.tensor([[0, 0, 0, 0]] * 3 + [[4, 0, 16, 16]]))),
     ValueError, "outside the 8x8 images"),
    (lambda: mix_images(torch.rand(4, 3, 8, 8), {"perm": torch.arange(4)}), TypeError, "MixParams"),
    (lambda: imix_loss(torch.randn(4, 3), torch.randn(4, 5), draw_mix(4, "mixup", 1.0, 8, 8)), ValueError,
     "same shape"),
    (lambda: imix_loss(torch.randn(4, 3), torch.randn(4, 3), draw_mix(4, "mixup", 1.0, 8, 8), 0.0), ValueError,
     "temperature"),
    (lambda: imix_loss(torch.randn(4), torch.randn(4), draw_mix(4, "mixup", 1.0, 8, 8)), ValueError, "2-D"),
    (lambda: imix_loss(torch.randn(3, 3), torch.randn(3, 3), draw_mix(4, "mixup", 1.0, 8, 8)), ValueError,
     "drawn for 4 images"),
])
def test_bad_inputs_raise_readable_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_batched_and_reference_gradients_agree(kind):
    """Mixing is linear in x: d out / d x routes each pixel's gradient to the image it came from, times its weight."""
    x = _views((6, 2, 5, 7), 4).double().requires_grad_()
    p = draw_mix(6, kind, 1.0, 5, 7, generator=torch.Generator().manual_seed(9))
    weights = torch.randn(6, 2, 5, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(mix_images(x, p), mix_images_reference(x, p))  # the autograd-friendly path is exact too
    (ours,) = torch.autograd.grad((mix_images(x, p) * weights).sum(), x)
    (ref,) = torch.autograd.grad((mix_images_reference(x, p) * weights).sum(), x)
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)
