"""Exercises of notebook 04 (the fused contrastive kernel): the two ideas the Triton kernels rest on.

`online_logsumexp(x, block)`: a row-wise logsumexp that reads x one tile of `block` columns at a
time, keeping only a running max and a running sum per row (the forward kernel's loop, in torch).
`negatives_lse_grad(zn, lse, dlse, temperature)`: the gradient the backward kernel computes,
written with the full matrices (the kernel computes the same thing one tile at a time).
"""

from __future__ import annotations

import torch

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.kernels.nt_xent import negatives_logsumexp_reference  # plain torch: Triton is not imported


def online_logsumexp_reference(x: torch.Tensor, block: int) -> torch.Tensor:
    """Row-wise logsumexp of x (R, C), streaming over column tiles of width `block`. Returns (R,).

    The forward kernel's loop, in torch, for notebook 04 to compare with torch.logsumexp; the exercise
    itself is checked against torch.logsumexp, which computes the same thing without tiles.
    """
    rows, cols = x.shape
    # A very negative *finite* start: with -inf, a row whose first tile is all -inf (masked) would
    # rescale with exp(-inf - (-inf)) = NaN.
    run_max = torch.full((rows,), torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device)
    run_sum = torch.zeros(rows, dtype=x.dtype, device=x.device)
    for start in range(0, cols, block):
        tile = x[:, start:start + block]                                   # (R, <= block)
        new_max = torch.maximum(run_max, tile.max(dim=1).values)
        run_sum = run_sum * torch.exp(run_max - new_max) + torch.exp(tile - new_max[:, None]).sum(dim=1)
        run_max = new_max
    return run_max + torch.log(run_sum)


def _masked_first_tile(gen: torch.Generator) -> tuple:
    x = torch.randn(4, 10, generator=gen)
    x[1, :4] = float("-inf")        # row 1: its whole first tile is masked
    x[2, 5] = float("-inf")
    return (x, 4)


def _logsumexp_reference(x: torch.Tensor, block: int) -> torch.Tensor:
    """torch's own row-wise logsumexp of x (R, C), (R,): the tiling must not change the result."""
    return torch.logsumexp(x, dim=1)


register(Exercise(
    name="online_logsumexp",
    reference=_logsumexp_reference,
    cases=[
        Case("one row, block divides C", lambda g: (torch.randn(1, 8, generator=g), 4)),
        Case("block does not divide C", lambda g: (torch.randn(5, 13, generator=g), 4), grad=True),
        Case("block = 1", lambda g: (torch.randn(3, 6, generator=g), 1)),
        Case("block larger than C", lambda g: (torch.randn(3, 6, generator=g), 64)),
        Case("large values (exp would overflow)", lambda g: (500 + 100 * torch.randn(4, 12, generator=g), 5)),
        Case("first tile fully masked with -inf", _masked_first_tile),
    ],
    hints=[
        "Keep two (R,) tensors: the largest value seen so far in each row (m) and the sum of "
        "exp(x - m) over the columns seen so far (s). Loop `for start in range(0, C, block)` over tiles "
        "x[:, start:start + block]; the answer at the end is m + log(s).",
        "When a tile raises the max from m to m_new, every term already in s was computed as exp(x - m): "
        "multiply s by exp(m - m_new) to re-base it, then add exp(tile - m_new[:, None]).sum(1).",
        "Start m at torch.finfo(x.dtype).min, not -inf: if a row's first tile is all -inf, m_new stays "
        "-inf and exp(m - m_new) = exp(-inf + inf) = NaN. With a finite start it is exp(0) * 0 = 0.",
    ],
    rtol=1e-5, atol=1e-5,
))


def negatives_lse_grad_reference(zn: torch.Tensor, lse: torch.Tensor, dlse: torch.Tensor,
                                 temperature: float) -> torch.Tensor:
    """d(sum_i dlse_i * lse_i)/dzn for lse_i = log sum_{j in neg(i)} exp(zn_i . zn_j / t), by autograd.
    (M, D); M = 2N >= 4, so that every row has a negative."""
    leaf = zn.detach().requires_grad_(True)
    with torch.enable_grad():
        out = negatives_logsumexp_reference(leaf, temperature)
    return torch.autograd.grad(out, leaf, dlse.detach())[0].to(zn.dtype)


def _lse_grad_inputs(rows: int, dim: int, temperature: float):
    def make(gen: torch.Generator) -> tuple:
        zn = torch.nn.functional.normalize(torch.randn(rows, dim, generator=gen), dim=1)
        lse = negatives_logsumexp_reference(zn, temperature)
        return (zn, lse, torch.randn(rows, generator=gen), temperature)
    return make


register(Exercise(
    name="negatives_lse_grad",
    reference=negatives_lse_grad_reference,
    cases=[
        Case("2N = 4 (one negative per row), D = 3, t = 0.5", _lse_grad_inputs(4, 3, 0.5)),
        Case("2N = 10, D = 7, t = 0.1", _lse_grad_inputs(10, 7, 0.1)),
        Case("2N = 6, D = 5, t = 1", _lse_grad_inputs(6, 5, 1.0)),
    ],
    hints=[
        "p_ij = exp(s_ij - lse_i) with s = zn @ zn.T / t is row i's softmax over its negatives, so "
        "d lse_i / d s_ij = p_ij there and 0 elsewhere: set p to 0 on the diagonal and at each partner "
        "(i, (i + N) mod 2N).",
        "zn_k enters s in row k (s_kj, for every j) and in column k (s_jk, for every j), so its gradient "
        "collects both: dzn_k = (1/t) sum_j (dlse_k p_kj + dlse_j p_jk) zn_j.",
        "With w = dlse[:, None] * p, that is (w + w.T) @ zn / t.",
    ],
    rtol=1e-4, atol=1e-6,
))


def check_online_logsumexp(fn):
    """Check `fn(x, block) -> (R,)`, a streaming row-wise logsumexp of x (R, C)."""
    return check("online_logsumexp", fn)


def check_negatives_lse_grad(fn):
    """Check `fn(zn, lse, dlse, temperature) -> (M, D)`, the gradient of sum_i dlse_i * lse_i."""
    return check("negatives_lse_grad", fn)


__all__ = ["check_negatives_lse_grad", "check_online_logsumexp", "online_logsumexp_reference"]
