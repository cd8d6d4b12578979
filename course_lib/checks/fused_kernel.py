"""Exercises of notebook 04 (the fused contrastive kernel): the ideas the Triton kernels rest on.

`online_logsumexp(x, block)`: a row-wise logsumexp that reads x one tile of `block` columns at a
time, keeping only a running max and a running sum per row (the forward kernel's loop, in torch).
`blocked_negatives_lse(zn, temperature, block)`: the forward kernel's whole walk, in torch: the
logsumexp over each row's negatives, one (2N, block) tile of similarities at a time; its check
refuses any intermediate tensor larger than one tile or the input.
`negatives_lse_grad(zn, lse, dlse, temperature)`: the gradient the backward kernel computes,
written with the full matrices (the kernel computes the same thing one tile at a time).
`self_check_04`: the notebook's closing questions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from course_lib.checks.compare import compare_outputs
from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.quiz import Choice, Number, self_check
from course_lib.kernels.nt_xent import NegativesLogSumExp, negatives_logsumexp_reference  # plain torch: Triton is not imported


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


# ---------------------------------------------------------------- blocked_negatives_lse
# The learner writes the forward kernel's walk: lse_i over the negatives of row i, one (M, block) tile of
# s = zn @ zn.T / t at a time. The reference is the library's, which builds the whole (M, M) matrix; the
# public check runs the learner's function under `_TileLimit`, so a solution that builds it fails.


class TileTooLarge(RuntimeError):
    """The learner's function made a tensor larger than one (2N, block) tile and the (2N, D) input."""


class _TileLimit(TorchFunctionMode):
    """Inside its `with` statement, raise TileTooLarge when a torch call returns a tensor of more than
    `limit` numbers."""

    def __init__(self, limit: int, rows: int, block: int):
        super().__init__()
        self.limit, self.rows, self.block = limit, rows, block

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.limit:
                raise TileTooLarge(
                    f"{getattr(func, '__name__', func)} made a tensor of shape {tuple(t.shape)} "
                    f"({t.numel()} numbers), more than one ({self.rows}, {self.block}) tile or the input holds "
                    f"({self.limit}); compute s one tile of columns at a time, e.g. "
                    "zn @ zn[start:start + block].T / temperature")
        return out


def _tile_limited(fn):
    """fn(zn, temperature, block), run so that no intermediate exceeds max(one (M, block) tile, zn).
    Anything but a function is returned as it is, for the framework to name."""
    if not callable(fn):
        return fn

    def limited(zn, temperature, block):
        rows, dim = zn.shape
        with _TileLimit(rows * max(min(block, rows), dim), rows, block):
            return fn(zn, temperature, block)

    return limited


def _blocked_reference(zn: torch.Tensor, temperature: float, block: int) -> torch.Tensor:
    """The library's full-matrix lse over the negatives, (M,) float32: tiling must not change it."""
    return negatives_logsumexp_reference(zn, temperature)


def _unit_rows(rows: int, dim: int, temperature: float, block: int):
    def make(gen: torch.Generator) -> tuple:
        return (F.normalize(torch.randn(rows, dim, generator=gen), dim=1), temperature, block)
    return make


def _clustered_rows(gen: torch.Generator) -> tuple:
    """Ten unit rows close to one direction, t = 0.01: every logit is near 100, and exp(100) is inf in float32."""
    base = torch.randn(1, 6, generator=gen)
    zn = F.normalize(base + 0.05 * base.norm() * torch.randn(10, 6, generator=gen), dim=1)
    return (zn, 0.01, 4)


def _masked_lse(zn: torch.Tensor, temperature: float, drop: torch.Tensor) -> torch.Tensor:
    """(M,) logsumexp of zn @ zn.T / t with the (M, M) bool `drop` masked out: the wrong variants, on purpose."""
    return torch.logsumexp((zn @ zn.T / temperature).masked_fill(drop, float("-inf")), dim=1)


def _close(got, want) -> bool:
    return isinstance(got, torch.Tensor) and compare_outputs(got.detach(), want, 1e-4, 1e-5) is None


def _diagnose_blocked(fn, gen) -> str | None:
    zn, t, block = _unit_rows(8, 5, 0.5, 3)(gen)
    got, want = fn(zn, t, block), negatives_logsumexp_reference(zn, t)
    i, j = torch.arange(8)[:, None], torch.arange(8)[None, :]
    if _close(got, _masked_lse(zn, t, i == j)):
        return ("Your sum includes each row's positive partner: leave out column (i + N) mod 2N as well as i. "
                "The positive comes back separately in softplus(lse - pos).")
    if _close(got, _masked_lse(zn, t, (i == j) | (i + 4 == j))):
        return ("Rows N..2N-1 keep their partner: their partner is (i + N) mod 2N, and i + N without the mod is "
                "past the last column, so it never matches.")
    if _close(got, _masked_lse(zn, t, (i + 4) % 8 == j)):
        return "Your sum includes s_ii = 1/t, each row with itself: mask the diagonal too."
    if not _close(got, want) and _close(fn(zn, t, 8), want):
        return ("Right with one tile, wrong with several: when a tile raises the max from m to m_new, multiply the "
                "running sum by exp(m - m_new); and build the mask from the columns' global indices start + k.")
    one = fn(zn, t, 1)
    if isinstance(one, torch.Tensor) and torch.isnan(one).any():
        return ("NaN with block = 1, where row i's tile can be column i alone, all masked: start the running max "
                "at torch.finfo(zn.dtype).min, not -inf, so that exp(m - m_new) is never exp(-inf + inf).")
    return None


register(Exercise(
    name="blocked_negatives_lse",
    reference=_blocked_reference,
    cases=[
        Case("2N = 12, D = 5, t = 0.5, block = 4 (divides 2N)", _unit_rows(12, 5, 0.5, 4), grad=True),
        Case("2N = 10, D = 7, t = 0.2, block = 3 (does not divide 2N)", _unit_rows(10, 7, 0.2, 3), grad=True),
        Case("block = 1 (a tile can be masked entirely)", _unit_rows(6, 4, 0.5, 1), grad=True),
        Case("block larger than 2N", _unit_rows(8, 3, 0.3, 64), grad=True),
        Case("2N = 2: no negatives, lse = -inf", _unit_rows(2, 4, 0.5, 1)),
        Case("t = 0.01, rows close together: logits near 100 (exp overflows float32)", _clustered_rows),
    ],
    hints=[
        "It is online_logsumexp over the tiles of s = zn @ zn.T / t, without ever building s: for each "
        "start in range(0, 2N, block), the tile is zn @ zn[start:start + block].T / t, shape (2N, <= block).",
        "Before the update, set to -inf every entry of the tile that is not a negative: column j = start + k "
        "(its global index) equal to the row i or to its partner (i + N) % 2N. With rows = torch.arange(2N) and "
        "cols = torch.arange(start, min(start + block, 2N)), the mask is "
        "(cols[None, :] == rows[:, None]) | (cols[None, :] == partner[:, None]).",
        "Then the update of online_logsumexp: m_new = max(m, tile.max(1)), s = s * exp(m - m_new) + "
        "exp(tile - m_new[:, None]).sum(1), with m starting at torch.finfo(zn.dtype).min; return m + log(s). "
        "A row without negatives ends with s = 0, so its lse is -inf, as it should be.",
    ],
    rtol=1e-4, atol=1e-5,
    diagnose=_diagnose_blocked,
    library=(negatives_logsumexp_reference, NegativesLogSumExp),
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
    library=(negatives_logsumexp_reference, NegativesLogSumExp),
))


def check_online_logsumexp(fn):
    """Check `fn(x, block) -> (R,)`, a streaming row-wise logsumexp of x (R, C)."""
    return check("online_logsumexp", fn)


def check_blocked_negatives_lse(fn):
    """Check `fn(zn, temperature, block) -> (2N,) float32`, the logsumexp over each row's negatives of
    zn (2N, D) float32 unit rows, computed one (2N, block) tile of similarities at a time."""
    return check("blocked_negatives_lse", _tile_limited(fn))


def check_negatives_lse_grad(fn):
    """Check `fn(zn, lse, dlse, temperature) -> (M, D)`, the gradient of sum_i dlse_i * lse_i."""
    return check("negatives_lse_grad", fn)


# ---------------------------------------------------------------- self_check_04

_ROWS = 65_536  # 2N of the questions: the size where the naive loss no longer fits (section 1)

check_self_check_04 = self_check("self_check_04", {
    1: Number(lambda: _ROWS * _ROWS * 4 / 2**30,
              why=f"(2N)^2 entries of 4 bytes: {_ROWS}^2 * 4 bytes = 16 GiB for one matrix, and the naive loss "
                  "keeps about three of them.",
              hint="count the entries, (2N)^2, times 4 bytes for float32, then divide by 2^30 bytes per GiB."),
    2: Number(lambda: _ROWS * 4 / 2**10,
              why="one float32 per row, 2N * 4 bytes = 256 KiB, against 16 GiB for one (2N, 2N) matrix.",
              hint="the forward kernel stores one float32 per row (lse_i): 2N * 4 bytes, then divide by 2^10 "
                   "bytes per KiB."),
    3: Choice("b", why="saving the tiles of s, or of p, for the backward would be the (2N, 2N) matrix again; "
                       "recomputing them from zn and the saved lse costs a second pass of matrix products "
                       "and only O(2N) extra memory.",
              wrong={"a": "recomputing gives the same numbers as saving them (the same products, in float32); "
                          "accuracy is not the reason.",
                     "c": "a kernel can write any tensor to GPU memory, as the forward does with lse; the point "
                          "is how large that tensor would be."}),
    4: Choice("a", why="every exponent is x - m <= 0, so every exp is at most 1: at t = 0.01 a logit of 100 "
                       "would otherwise give exp(100), which is inf in float32.",
              wrong={"b": "the running max skips nothing: every tile is read and added to the running sum.",
                     "c": "the diagonal is removed by the mask (-inf), not by the max."}),
    5: Choice("c", why="with no negatives lse = log(0) = -inf, and softplus(-inf - pos) = log(1 + 0) = 0: "
                       "nothing to push away, nothing to learn.",
              wrong={"a": "NaN would come from exp(-inf + inf), which the finite start of the running max avoids; "
                          "the exact answer is a plain number.",
                     "b": "log 2 is the loss when the single negative scores exactly like the positive; here there "
                          "is no negative at all."}),
}, hints=[
    "Questions 1 and 2 are arithmetic on 2N = 65,536 (section 1 prints the first); 3 to 5 are in sections 3, 2 "
    "and the exercise on the forward walk.",
    "Question 5: what is the log of an empty sum, and what is softplus of a very negative number?",
])


__all__ = ["check_blocked_negatives_lse", "check_negatives_lse_grad", "check_online_logsumexp",
           "check_self_check_04", "online_logsumexp_reference"]
