"""Fused NT-Xent: the loss without the (2N, 2N) similarity matrix, forward and backward.

Motivation. `losses.nt_xent_reference` materialises the logits (2N, 2N), the softmax that
cross-entropy keeps for its backward, and the gradient of the logits, each 4 * (2N)^2 bytes in fp32:
at 2N = 65,536 that is 16 GiB per matrix, 48 GiB for the three (computed; unmeasured here). Yet the loss needs
only two numbers per row, the positive logit and the logsumexp over the negatives:

    loss_i = -log(e^pos_i / (e^pos_i + e^lse_i)) = softplus(lse_i - pos_i)
    pos_i = s_{i, p(i)},    lse_i = log sum_{j in neg(i)} exp(s_ij),    s_ij = zn_i . zn_j / t

with p(i) = (i + N) mod 2N the positive partner and neg(i) every row but i and p(i). Why this form and
not the textbook `log sum_{j != i} exp(s_ij) - pos_i`: when the positive dominates, that difference
subtracts two numbers of size up to 1/t to get a loss that can be 1e-8, and in float32 the rounding of
the two terms (about 1e-6 at t = 0.05) swamps it, even below 0. softplus(x) keeps relative accuracy for
very negative x, where it is about e^x.

`pos` costs O(N * D) in plain torch. `lse` is computed by the Triton kernels of `nt_xent_triton`,
streaming over tiles of s with an online logsumexp; their backward recomputes the tiles. Row
normalisation, the positive term and the softplus stay in torch, so autograd differentiates them and
the kernels only ever see unit rows.

Tolerances (tests/test_kernels.py): fp32 loss and gradient within 1e-5 relative of the reference
(gradients: 1e-5 of their largest entry); bf16, against the fp32 reference of the same bf16 inputs,
loss within 1 % and gradient within 2 % of its largest entry (the bf16 reference itself rounds its
logits to bf16 and is further off at low temperature). Checked on CPU in Triton's interpreter; the
compiled CUDA path (tf32x3 fp32 tiles, bf16 tensor cores) is covered by the same tests on a GPU,
which had not run yet when this was written.

Pieces, in the order of Triton's tutorials: `negatives_logsumexp_reference` (the naive reference),
the kernels and launchers (`nt_xent_triton`), `NegativesLogSumExp` (the autograd Function),
`nt_xent_fused` (the loss) and `prefer_fused` (when `impl="auto"` picks it).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch
import torch.nn.functional as F

# impl="auto" uses the kernel on CUDA from this many rows (2N) up. UNMEASURED: 4,096 is a conservative
# guess (the size from which the kernel is meant to be no slower than the naive loss); set it from
# benchmarks/results/nt_xent-<card>.json once the benchmark has run on a GPU.
FUSED_MIN_ROWS = 4096

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def triton_available() -> bool:
    """Whether Triton can be imported (torch's Linux CUDA builds ship it; macOS and Windows do not)."""
    return importlib.util.find_spec("triton") is not None


def _kernels():
    from course_lib.kernels import nt_xent_triton  # lazy: importing Triton takes about a second

    return nt_xent_triton


def interpreting() -> bool:
    """Whether the kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1 set before import)."""
    return triton_available() and _kernels().INTERPRETED


def interpreter_without_gpu() -> bool:
    """Without CUDA, switch Triton to its CPU interpreter (sets TRITON_INTERPRET=1); with CUDA, do
    nothing. Returns whether the kernels will run interpreted. Call it before anything imports
    triton, e.g. in a notebook's first cell: Triton reads the variable when it decorates kernels."""
    if torch.cuda.is_available():
        return False
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("triton was imported before TRITON_INTERPRET=1 could be set, so its kernels are "
                           "compiled for a GPU this machine lacks. Restart the Python kernel and call "
                           "interpreter_without_gpu() before anything else imports triton.")
    os.environ["TRITON_INTERPRET"] = "1"
    return True


def negatives_mask(rows: int, device=None) -> torch.Tensor:
    """(M, M) bool for M = 2N views: True where column j is a negative of row i (j is neither i nor
    its positive partner p(i) = (i + N) mod 2N). Symmetric."""
    if rows % 2:
        raise ValueError(f"expected 2N rows (two views of N images), got {rows}: rows i and i + N are partners.")
    i = torch.arange(rows, device=device)
    partner = (i + rows // 2) % rows
    return (i[None, :] != i[:, None]) & (i[None, :] != partner[:, None])


def negatives_logsumexp_reference(zn: torch.Tensor, temperature: float) -> torch.Tensor:
    """Naive reference of the kernels: (M,) float32 (float64 for float64 zn),
    log sum_{j in neg(i)} exp(zn_i . zn_j / t).

    zn: (M, D) float, M = 2N, used as given (not normalised here). Builds the (M, M) matrix.
    With 2N = 2 there are no negatives and every entry is -inf (the log of an empty sum).
    """
    zf = zn.double() if zn.dtype == torch.float64 else zn.float()
    logits = zf @ zf.T / temperature                                                 # (M, M)
    keep = negatives_mask(len(zn), zn.device)
    return torch.logsumexp(logits.masked_fill(~keep, float("-inf")), dim=1)          # (M,)


class NegativesLogSumExp(torch.autograd.Function):
    """Autograd wrapper of the kernels: zn (M, D) -> lse (M,) fp32; the backward recomputes tiles.

    Saves only zn (already needed by autograd) and lse (M floats) for the backward.
    """

    @staticmethod
    def forward(ctx, zn: torch.Tensor, temperature: float, config=None) -> torch.Tensor:
        lse = _kernels().lse_forward(zn, temperature, config)
        ctx.save_for_backward(zn, lse)
        ctx.temperature, ctx.config = temperature, config
        return lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dlse: torch.Tensor):
        zn, lse = ctx.saved_tensors
        dzn = _kernels().lse_backward(zn, lse, dlse.float(), ctx.temperature, ctx.config)
        return dzn.to(zn.dtype), None, None


def _require_runnable(z: torch.Tensor) -> None:
    """Raise a readable error unless the Triton kernel can run on z here."""
    if z.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"the fused NT-Xent kernel takes float32, bfloat16 or float16 embeddings, got {z.dtype}; "
                        "use impl='torch' (the reference) or cast z.")
    if not triton_available():
        raise RuntimeError("impl='triton' needs Triton, which is not installed (torch's Linux CUDA wheels ship it). "
                           "Use impl='torch' (the reference) or impl='auto'.")
    if z.device.type == "cuda" or interpreting():
        return
    raise RuntimeError(
        f"the Triton kernel runs on CUDA tensors, and z is on {z.device.type}. Use impl='torch' (the reference) "
        "or impl='auto' here, or, to run the kernel on the CPU in Triton's (slow) interpreter, set "
        "TRITON_INTERPRET=1 in the environment before Python imports triton (e.g. `TRITON_INTERPRET=1 jupyter lab`)."
    )


def nt_xent_fused(z: torch.Tensor, temperature: float, config=None) -> torch.Tensor:
    """NT-Xent of z (2N, D) without the (2N, 2N) matrix; positives are rows i and i + N.

    z: float32, bfloat16 or float16, validated by `losses.nt_xent`. Rows are normalised in fp32
    (then rounded back to z's dtype for the kernel); the kernels accumulate in fp32. Returns a
    scalar in z's dtype, like the reference, accurate relative to the loss even when it is tiny (a
    positive far above every negative). `config` (a `LaunchConfig`) overrides the tile sizes.
    """
    _require_runnable(z)
    n = z.shape[0] // 2
    zn = F.normalize(z.float(), dim=1).to(z.dtype)                                   # (2N, D) unit rows
    lse = NegativesLogSumExp.apply(zn, temperature, config)                           # (2N,) fp32
    zf = zn.float()
    pos = (zf * zf.roll(n, dims=0)).sum(dim=1) / temperature                          # (2N,) s_{i, p(i)}
    return F.softplus(lse - pos).mean().to(z.dtype)


def prefer_fused(z: torch.Tensor) -> bool:
    """impl="auto": True only for a CUDA tensor with at least FUSED_MIN_ROWS rows, compiled Triton
    available and a supported dtype; the reference is used everywhere else (CPU, MPS, small batches)."""
    if not (isinstance(z, torch.Tensor) and z.device.type == "cuda"):
        return False
    if z.dim() != 2 or z.shape[0] < FUSED_MIN_ROWS or z.dtype not in SUPPORTED_DTYPES:
        return False
    # The interpreter would copy a CUDA tensor to the host and back: correct, but far slower.
    return triton_available() and not interpreting()


__all__ = [
    "FUSED_MIN_ROWS", "interpreter_without_gpu", "SUPPORTED_DTYPES", "NegativesLogSumExp", "interpreting",
    "negatives_logsumexp_reference", "negatives_mask", "nt_xent_fused", "prefer_fused", "triton_available",
]
