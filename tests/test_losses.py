"""course_lib.contrastive.losses against independent float64 computations (explicit loops in NumPy), plus every validation error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.contrastive import losses
from course_lib.contrastive.losses import alignment, info_nce, nt_xent, nt_xent_reference, uniformity


def _unit(z: np.ndarray) -> np.ndarray:
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def nt_xent_loops(z: np.ndarray, t: float) -> tuple[float, np.ndarray]:
    """NT-Xent and its gradient w.r.t. z, float64, one row at a time, from the formulas on paper."""
    z = np.asarray(z, dtype=np.float64)
    rows, n = len(z), len(z) // 2
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    zn = z / norms
    total, g_sim = 0.0, np.zeros((rows, rows))
    for i in range(rows):
        others = [k for k in range(rows) if k != i]
        logits = np.array([zn[i] @ zn[k] / t for k in others])
        m = logits.max()
        probs = np.exp(logits - m) / np.exp(logits - m).sum()
        total += m + math.log(np.exp(logits - m).sum()) - zn[i] @ zn[(i + n) % rows] / t
        for k, p in zip(others, probs):
            g_sim[i, k] += (p - (k == (i + n) % rows)) / (t * rows)
    g_zn = g_sim @ zn + g_sim.T @ zn                                   # s_ik = zn_i . zn_k
    g_z = (g_zn - zn * (g_zn * zn).sum(axis=1, keepdims=True)) / norms  # through zn = z / |z|
    return total / rows, g_z


def info_nce_loops(a: np.ndarray, p: np.ndarray, t: float) -> float:
    a, p = _unit(np.asarray(a, np.float64)), _unit(np.asarray(p, np.float64))
    total = 0.0
    for i in range(len(a)):
        logits = np.array([a[i] @ p[j] / t for j in range(len(p))])
        m = logits.max()
        total += m + math.log(np.exp(logits - m).sum()) - logits[i]
    return total / len(a)


def _z(rows: int, dim: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("rows,dim", [(2, 1), (2, 3), (6, 3), (6, 129), (74, 1), (74, 129)])
@pytest.mark.parametrize("t", [0.07, 0.5])
def test_nt_xent_value_and_gradient_match_float64_loops(rows, dim, t):
    z = _z(rows, dim, seed=rows * 1000 + dim, dtype=torch.float64).requires_grad_(True)
    loss = nt_xent(z, t, impl="torch")
    loss.backward()
    want, want_grad = nt_xent_loops(z.detach().numpy(), t)
    assert loss.dtype == torch.float64 and loss.shape == ()
    assert loss.item() == pytest.approx(want, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(z.grad.numpy(), want_grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("rows,dim", [(6, 3), (74, 129)])
def test_nt_xent_float32_within_tolerance_of_float64(rows, dim):
    z = _z(rows, dim, seed=3).requires_grad_(True)
    nt_xent(z, 0.2, impl="torch").backward()
    want, want_grad = nt_xent_loops(z.detach().double().numpy(), 0.2)
    assert nt_xent(z, 0.2, impl="torch").item() == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(z.grad.numpy(), want_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rows,dim", [(2, 1), (6, 3), (10, 5)])
def test_nt_xent_gradcheck_float64(rows, dim):
    z = _z(rows, dim, seed=7, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: nt_xent_reference(x, 0.3), (z,))
    assert torch.autograd.gradcheck(lambda x: nt_xent(x, 0.3, impl="torch"), (z,))


def test_nt_xent_auto_on_cpu_equals_reference():
    z = _z(8, 16)
    assert torch.allclose(nt_xent(z, 0.5), nt_xent_reference(z, 0.5), rtol=1e-5, atol=1e-6)


def test_small_temperature_float32_is_finite_and_exact():
    base = _z(16, 32, seed=1)
    z = torch.cat([base, base + 0.3 * _z(16, 32, seed=2)]).requires_grad_(True)
    loss = nt_xent(z, 0.01, impl="torch")
    loss.backward()
    want, want_grad = nt_xent_loops(z.detach().double().numpy(), 0.01)
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    assert loss.item() == pytest.approx(want, rel=1e-4, abs=1e-5)
    # The case needs the stable form: a naive softmax, exp of the logits (up to 1 / 0.01 = 100, above
    # log(float32 max) = 88.7), overflows on this very batch.
    zn = torch.nn.functional.normalize(z.detach(), dim=1)
    assert not torch.isfinite(torch.exp(zn @ zn.T / 0.01).sum(1)).all()


def test_small_temperature_under_bf16_autocast_is_finite():
    base = _z(16, 32, seed=4)
    z = torch.cat([base, base + 0.3 * _z(16, 32, seed=5)]).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent(z, 0.01, impl="torch")
    loss.backward()
    want, _ = nt_xent_loops(z.detach().double().numpy(), 0.01)
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    assert loss.float().item() == pytest.approx(want, rel=0.05, abs=0.05)  # bf16 keeps ~3 significant digits
    zb = z.detach().bfloat16()
    assert torch.isfinite(nt_xent(zb, 0.01, impl="torch"))


def test_nt_xent_invariant_to_row_scale():
    z = _z(8, 5)
    scales = torch.logspace(-3, 3, 8)[:, None]
    assert torch.allclose(nt_xent(z, 0.5, impl="torch"), nt_xent(z * scales, 0.5, impl="torch"), rtol=1e-5)


@pytest.mark.parametrize("n,dim,t", [(1, 4, 0.1), (5, 3, 0.1), (37, 129, 0.5)])
def test_info_nce_matches_loops_and_bound(n, dim, t):
    a, p = _z(n, dim, seed=1, dtype=torch.float64), _z(n, dim, seed=2, dtype=torch.float64)
    loss = info_nce(a, p, t)
    assert loss.item() == pytest.approx(info_nce_loops(a.numpy(), p.numpy(), t), rel=1e-10, abs=1e-12)
    assert math.log(n) - loss.item() <= math.log(n)


@pytest.mark.parametrize("n", [2, 16, 256])
def test_info_nce_bound_never_exceeds_log_n_even_for_perfect_pairs(n):
    a = _z(n, 8, seed=n)
    estimate = math.log(n) - info_nce(a, a, 0.01).item()
    assert estimate <= math.log(n) + 1e-6
    assert estimate > math.log(n) - 0.05  # a perfect encoder reaches the ceiling


def test_info_nce_gradcheck():
    a = _z(5, 3, seed=1, dtype=torch.float64).requires_grad_(True)
    p = _z(5, 3, seed=2, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, y: info_nce(x, y, 0.2), (a, p))


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_matches_direct_formula(alpha):
    x, y = _z(9, 4, seed=1, dtype=torch.float64), _z(9, 4, seed=2, dtype=torch.float64)
    xn, yn = _unit(x.numpy()), _unit(y.numpy())
    want = np.mean([np.linalg.norm(xn[i] - yn[i]) ** alpha for i in range(9)])
    assert alignment(x, y, alpha).item() == pytest.approx(want, rel=1e-12)
    assert alignment(x, x).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n,dim,t", [(2, 3, 2.0), (11, 2, 2.0), (20, 5, 0.5)])
def test_uniformity_matches_direct_formula(n, dim, t):
    x = _z(n, dim, seed=n, dtype=torch.float64)
    xn = _unit(x.numpy())
    terms = [math.exp(-t * np.sum((xn[i] - xn[j]) ** 2)) for i in range(n) for j in range(n) if i != j]
    assert uniformity(x, t).item() == pytest.approx(math.log(np.mean(terms)), rel=1e-10)


def test_uniformity_extremes_and_gradcheck():
    collapsed = torch.ones(6, 3, dtype=torch.float64)
    assert uniformity(collapsed).item() == pytest.approx(0.0, abs=1e-12)       # the worst value
    angles = torch.arange(400, dtype=torch.float64) * 2 * math.pi / 400
    circle = torch.stack([angles.cos(), angles.sin()], dim=1)
    # On the uniform circle, E exp(-2 |x - y|^2) = e^-4 I0(4), I0(4) = 11.3019219521.
    assert uniformity(circle).item() == pytest.approx(math.log(math.exp(-4) * 11.3019219521), abs=0.01)
    x = _z(5, 3, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(uniformity, (x,))
    assert torch.autograd.gradcheck(lambda a: alignment(a, torch.ones(5, 3, dtype=torch.float64)), (x,))


# ---- every validation error names what was expected ----------------------------------------------

BAD_Z = [
    (lambda: _z(7, 4), ValueError, "2N rows"),
    (lambda: _z(1, 4), ValueError, "2N rows"),
    (lambda: torch.randn(8), ValueError, "must be 2-D"),
    (lambda: torch.randn(2, 4, 3), ValueError, "must be 2-D"),
    (lambda: torch.randn(4, 0), ValueError, "at least 1"),
    (lambda: torch.ones(4, 3, dtype=torch.int64), TypeError, "floating"),
    (lambda: _z(4, 3).index_fill(0, torch.tensor([2]), float("nan")), ValueError, "NaN or inf"),
    (lambda: _z(4, 3).index_fill(0, torch.tensor([1]), float("inf")), ValueError, "NaN or inf"),
    (lambda: [[1.0, 2.0], [3.0, 4.0]], TypeError, "torch.Tensor"),
]


@pytest.mark.parametrize("make,error,words", BAD_Z)
def test_nt_xent_rejects_bad_z(make, error, words):
    with pytest.raises(error, match=words):
        nt_xent(make(), 0.5, impl="torch")


def test_nan_message_names_the_bad_rows():
    z = _z(6, 3).index_fill(0, torch.tensor([4]), float("nan"))
    with pytest.raises(ValueError, match=r"first bad rows: \[4\]"):
        nt_xent(z, 0.5, impl="torch")


@pytest.mark.parametrize("temperature,error", [
    (0, ValueError), (0.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
    (float("inf"), ValueError), (True, TypeError), ("0.5", TypeError), (None, TypeError),
    (torch.tensor([0.1, 0.2]), ValueError),
])
@pytest.mark.parametrize("fn", ["nt_xent", "info_nce"])
def test_bad_temperature_raises(temperature, error, fn):
    z = _z(4, 3)
    with pytest.raises(error, match="temperature"):
        if fn == "nt_xent":
            nt_xent(z, temperature, impl="torch")
        else:
            info_nce(z, z, temperature)


def test_temperature_message_says_what_is_expected():
    with pytest.raises(ValueError, match="finite number > 0, got 0"):
        losses.validate_temperature(0)
    assert losses.validate_temperature(torch.tensor(0.25)) == 0.25


def test_unknown_impl_raises():
    with pytest.raises(ValueError, match="impl must be one of"):
        nt_xent(_z(4, 3), 0.5, impl="cuda")


@pytest.mark.parametrize("fn", [lambda a, b: info_nce(a, b, 0.1), alignment])
def test_mismatched_pairs_raise(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(_z(4, 3), _z(5, 3))
    with pytest.raises(ValueError, match="same shape"):
        fn(_z(4, 3), _z(4, 2))


@pytest.mark.parametrize("fn", [lambda x: info_nce(x, x, 0.1), lambda x: alignment(x, x), uniformity])
def test_other_losses_validate_their_inputs(fn):
    with pytest.raises(ValueError, match="2-D"):
        fn(torch.randn(5))
    with pytest.raises(ValueError, match="NaN or inf"):
        fn(_z(4, 3).index_fill(0, torch.tensor([0]), float("inf")))
    with pytest.raises(TypeError, match="floating"):
        fn(torch.ones(4, 3, dtype=torch.int32))


def test_uniformity_needs_two_points():
    with pytest.raises(ValueError, match="at least 2"):
        uniformity(_z(1, 3))


def test_positive_index_pairs_i_with_i_plus_n():
    assert losses.positive_index(6).tolist() == [3, 4, 5, 0, 1, 2]
    assert losses.positive_index(2).tolist() == [1, 0]


def test_a_batch_of_one_image_warns_that_its_loss_is_always_zero():
    with pytest.warns(UserWarning, match="batch of one image"):
        loss = nt_xent(torch.randn(2, 8), 0.5, impl="torch")
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
