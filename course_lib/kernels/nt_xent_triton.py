"""Triton kernels of the fused NT-Xent: the row-wise logsumexp of the similarity matrix over negatives.

Importing this module imports Triton (course_lib.kernels.nt_xent does it lazily, only when the fused
path is used). Read it in the order of Triton's tutorials; the motivation and the naive reference
are in course_lib/kernels/nt_xent.py and notebook 04.

Given M = 2N unit rows zn (M, D) and a temperature t, the forward kernel computes for every row i

    lse_i = log sum_{j in neg(i)} exp(s_ij),   s_ij = zn_i . zn_j / t,   neg(i) = all j but i and p(i)

where p(i) = (i + N) mod 2N is row i's positive partner. The relation is symmetric (j is a negative of i
exactly when i is a negative of j), which the backward uses. The forward walks s
one (BLOCK_M x BLOCK_N) tile of s at a time, keeping per row only a running maximum and a running
sum (the online logsumexp), so the (M, M) matrix never exists: memory is O(M) beyond the inputs.
The backward kernel, given g_i = dLoss/dlse_i, recomputes the same tiles instead of storing them:

    dLoss/dzn_k = (1/t) sum_{j in neg(k)} (g_k p_kj + g_j p_jk) zn_j,      p_ij = exp(s_ij - lse_i)

(the first term: zn_k appears in row k; the second: zn_k is a column of every other row j).

Interpreter note (Triton 3.8): under TRITON_INTERPRET=1, tl.dot multiplies bfloat16 tiles as raw
uint16 bits. The launchers therefore hand the interpreter fp32 copies of bf16/fp16 rows (exact:
every bf16/fp16 value is an fp32 value); the low-precision tensor-core path runs only on a GPU. So
the CPU tests check bf16 inputs through those fp32 copies only: the bf16 tiles and their dots are
checked by the CUDA tests (tests/test_kernels.py, skipped without a GPU) and, for register use, by
the compile-only builds for sm_75, sm_80 and sm_90 that run everywhere.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

# fp32 tiles: "tf32x3" splits each fp32 operand into two TF32 parts and keeps three of the four
# products, about fp32 accuracy on tensor cores; "ieee" is exact fp32 FMA, slower; "tf32" alone
# (Triton's default) has a 10-bit mantissa and would miss the 1e-5 parity target.
FP32_DOT_PRECISION = "tf32x3"


@triton.jit
def _similarity_tile(
    z_ptr,                      # (M, D) unit rows, row-major
    rows_i, rows_j,             # (BLOCK_M,), (BLOCK_N,) int32: which rows of z the tile pairs
    M, D, stride_row,           # rows, embedding size, elements between consecutive rows
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """(BLOCK_M, BLOCK_N) fp32 tile of zn_i . zn_j, summed over D in chunks of BLOCK_D (any D)."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        # Out-of-range rows and columns load 0, which adds nothing to the dot product.
        zi = tl.load(z_ptr + rows_i[:, None] * stride_row + cols[None, :],
                     mask=(rows_i[:, None] < M) & (cols[None, :] < D), other=0.0)      # (BLOCK_M, BLOCK_D)
        zj = tl.load(z_ptr + rows_j[:, None] * stride_row + cols[None, :],
                     mask=(rows_j[:, None] < M) & (cols[None, :] < D), other=0.0)      # (BLOCK_N, BLOCK_D)
        acc = tl.dot(zi, tl.trans(zj), acc, input_precision=DOT_PRECISION)           # fp32 accumulation
    return acc


@triton.jit
def _negatives(rows_i, rows_j, M):
    """(BLOCK_M, BLOCK_N) bool: column j is a negative of row i (a real row, neither i nor its partner)."""
    half = M // 2
    partner = tl.where(rows_i < half, rows_i + half, rows_i - half)                  # p(i) = (i + N) mod 2N
    return ((rows_i[:, None] < M) & (rows_j[None, :] < M)
            & (rows_j[None, :] != rows_i[:, None]) & (rows_j[None, :] != partner[:, None]))


@triton.jit
def _lse_fwd_kernel(
    z_ptr,                      # (M, D) unit rows, fp32 / bf16 / fp16, row-major
    lse_ptr,                    # (M,) fp32 output: log sum_{j in neg(i)} exp(s_ij)
    M, D, stride_row,           # rows (2N), embedding size, elements between consecutive rows
    inv_temp,                   # 1 / temperature
    BLOCK_M: tl.constexpr,      # rows handled by one program
    BLOCK_N: tl.constexpr,      # columns of s per step of the streaming loop
    BLOCK_D: tl.constexpr,      # embedding chunk per tl.dot (a power of 2, >= 16)
    DOT_PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)                    # (BLOCK_M,)
    # Start the running max at a very negative *finite* number, not -inf: a row whose first tile
    # is fully masked would otherwise compute exp(-inf - (-inf)) = NaN when rescaling.
    run_max = tl.full((BLOCK_M,), -1.0e30, dtype=tl.float32)
    run_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for start in range(0, M, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)                                        # (BLOCK_N,)
        logits = _similarity_tile(z_ptr, rows, cols, M, D, stride_row,
                                  BLOCK_M, BLOCK_N, BLOCK_D, DOT_PRECISION) * inv_temp
        # Neither the view itself nor its positive partner is a negative, and padding past column M is
        # not a view at all. (Padding rows past M are not stored.) Leaving the positive out is what lets
        # the loss be computed as softplus(lse - pos) without cancellation (see nt_xent.py).
        logits = tl.where(_negatives(rows, cols, M), logits, float("-inf"))
        # Online logsumexp: rescale the old sum to the new max, then add this tile's terms.
        new_max = tl.maximum(run_max, tl.max(logits, axis=1))
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(logits - new_max[:, None]), axis=1)
        run_max = new_max
    # With 2N = 2 a row has no negatives: run_sum is 0 and lse is -inf, the log of an empty sum.
    tl.store(lse_ptr + rows, run_max + tl.log(run_sum), mask=rows < M)


@triton.jit
def _lse_bwd_kernel(
    z_ptr,                      # (M, D) unit rows, as in the forward
    lse_ptr,                    # (M,) fp32, saved by the forward
    dlse_ptr,                   # (M,) fp32, g_i = dLoss/dlse_i
    dz_ptr,                     # (M, D) fp32 output, dLoss/dzn
    M, D, stride_row, stride_dz_row,
    inv_temp,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    # Program (pid_m, pid_d) writes rows pid_m*BLOCK_M.. and embedding columns pid_d*BLOCK_D.. of dz;
    # splitting D over programs keeps the accumulator in registers for D up to 512 and beyond.
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)                    # (BLOCK_M,)
    out_cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)                # (BLOCK_D,)
    lse_i = tl.load(lse_ptr + rows, mask=rows < M, other=0.0)
    g_i = tl.load(dlse_ptr + rows, mask=rows < M, other=0.0)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for start in range(0, M, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        logits = _similarity_tile(z_ptr, rows, cols, M, D, stride_row,
                                  BLOCK_M, BLOCK_N, BLOCK_D, DOT_PRECISION) * inv_temp
        keep = _negatives(rows, cols, M)
        lse_j = tl.load(lse_ptr + cols, mask=cols < M, other=0.0)
        g_j = tl.load(dlse_ptr + cols, mask=cols < M, other=0.0)
        # s and the negatives relation are symmetric, so this one tile gives both p_ij (row i's softmax)
        # and p_ji (row j's); where kept, both are <= 1 because lse_i >= s_ij: nothing overflows.
        p_ij = tl.where(keep, tl.exp(logits - lse_i[:, None]), 0.0)
        p_ji = tl.where(keep, tl.exp(logits - lse_j[None, :]), 0.0)
        weights = g_i[:, None] * p_ij + g_j[None, :] * p_ji                       # (BLOCK_M, BLOCK_N)
        zj = tl.load(z_ptr + cols[:, None] * stride_row + out_cols[None, :],
                     mask=(cols[:, None] < M) & (out_cols[None, :] < D), other=0.0)  # (BLOCK_N, BLOCK_D)
        # Round the weights to z's dtype (bf16 on a GPU) so the product runs on tensor cores.
        acc = tl.dot(weights.to(zj.dtype), zj, acc, input_precision=DOT_PRECISION)
    tl.store(dz_ptr + rows[:, None] * stride_dz_row + out_cols[None, :], acc * inv_temp,
             mask=(rows[:, None] < M) & (out_cols[None, :] < D))


# ----------------------------------------------------------------------------- launchers

INTERPRETED = isinstance(_lse_fwd_kernel, InterpretedFunction)  # TRITON_INTERPRET=1 was set before import


@dataclass(frozen=True)
class LaunchConfig:
    """Tile sizes, warps and pipeline stages; each block is a power of 2 and at least 16 (tl.dot)."""

    block_m: int = 64           # rows per program
    block_n: int = 64           # columns per streaming step
    block_d: int = 64           # embedding chunk (a larger D loops over chunks)
    num_warps: int = 8
    num_stages: int = 3


SMALL = LaunchConfig(block_m=32, block_n=32, block_d=32, num_warps=4, num_stages=2)
# Per GPU generation (compute capability major) and operand type: among 7 tile shapes built for each, the
# largest whose build uses no register spills (ptxas -v on Triton's compile-only builds, D = 128; checked in
# tests/test_kernels.py). Speed is NOT measured yet (no GPU run). fp32 uses tf32x3 from sm_80 on, which keeps
# split operands live and needs smaller tiles there; sm_75 (T4) has no bf16 tensor cores and spills above 32.
TILES = {
    7: {"fp32": LaunchConfig(), "half": SMALL},
    8: {"fp32": SMALL, "half": LaunchConfig()},
    9: {"fp32": LaunchConfig(block_m=64, block_n=32, block_d=32, num_warps=4, num_stages=2), "half": LaunchConfig()},
}


def launch_config(dim: int, dtype: torch.dtype = torch.float32, capability: tuple[int, int] | None = None
                  ) -> LaunchConfig:
    """Tiles for embedding size `dim`, `dtype` and the GPU's compute capability (None: sm_90's; newer GPUs
    get sm_90's too, older than sm_75 sm_75's). See TILES: spill-free builds, not autotuned."""
    if INTERPRETED:
        cfg = LaunchConfig(block_d=128)  # the interpreter runs Python per tile: fewer, larger tiles are faster
    else:
        major = min(max((capability or (9, 0))[0], 7), 9)
        cfg = TILES[major]["fp32" if dtype == torch.float32 else "half"]
    # A small D needs no more than one chunk (16 is tl.dot's minimum).
    return replace(cfg, block_d=min(cfg.block_d, max(16, triton.next_power_of_2(dim))))


def _dot_precision(dtype: torch.dtype) -> str:
    return FP32_DOT_PRECISION if dtype == torch.float32 else "ieee"  # ignored for bf16/fp16 tiles


def _capability(device: torch.device) -> tuple[int, int] | None:
    return torch.cuda.get_device_capability(device) if device.type == "cuda" else None


def launch_device(device: torch.device):
    """A context that makes `device` current for a launch: Triton launches on the current CUDA device, so a z
    on cuda:1 needs cuda:1 current (on the CPU, under the interpreter, nothing to do)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _kernel_input(zn: torch.Tensor) -> torch.Tensor:
    """zn, contiguous; fp32 under the interpreter (see the module docstring)."""
    if INTERPRETED and zn.dtype != torch.float32:
        zn = zn.float()
    return zn.contiguous()


def lse_forward(zn: torch.Tensor, temperature: float, config: LaunchConfig | None = None) -> torch.Tensor:
    """(M,) fp32: log sum_{j in neg(i)} exp(zn_i . zn_j / temperature) for zn of shape (M, D), M = 2N >= 2."""
    z = _kernel_input(zn)
    rows, dim = z.shape
    cfg = config or launch_config(dim, z.dtype, _capability(z.device))
    lse = torch.empty(rows, dtype=torch.float32, device=z.device)
    grid = (triton.cdiv(rows, cfg.block_m),)
    with launch_device(z.device):
        _lse_fwd_kernel[grid](
            z, lse, rows, dim, z.stride(0), 1.0 / temperature,
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_D=cfg.block_d,
            DOT_PRECISION=_dot_precision(z.dtype), num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
    return lse


def lse_backward(zn: torch.Tensor, lse: torch.Tensor, dlse: torch.Tensor, temperature: float,
                 config: LaunchConfig | None = None) -> torch.Tensor:
    """(M, D) fp32 gradient w.r.t. zn, given lse from lse_forward and dlse (M,) fp32 = dLoss/dlse."""
    z = _kernel_input(zn)
    rows, dim = z.shape
    cfg = config or launch_config(dim, z.dtype, _capability(z.device))
    dz = torch.empty(rows, dim, dtype=torch.float32, device=z.device)
    grid = (triton.cdiv(rows, cfg.block_m), triton.cdiv(dim, cfg.block_d))
    with launch_device(z.device):
        _lse_bwd_kernel[grid](
            z, lse.contiguous(), dlse.contiguous(), dz, rows, dim, z.stride(0), dz.stride(0), 1.0 / temperature,
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_D=cfg.block_d,
            DOT_PRECISION=_dot_precision(z.dtype), num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
    return dz


__all__ = ["FP32_DOT_PRECISION", "INTERPRETED", "LaunchConfig", "TILES", "launch_config", "launch_device",
           "lse_forward", "lse_backward"]
