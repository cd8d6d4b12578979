"""Contrastive losses: InfoNCE / NT-Xent (reference), alignment and uniformity, input validation.

Conventions (glossary): a batch of N images gives 2N views; `z` is their (2N, D) projections, with
the two views of image i in rows i and i + N. Each row's positive is its partner; the other
2N - 2 rows are its negatives.

    NT-Xent (Chen et al., 2020):   loss_i = -log  exp(s(i, p(i)) / t) / sum_{j != i} exp(s(i, j) / t)

with s the cosine similarity, t the temperature and p(i) = (i + N) mod 2N. The reference below is
written in the stable form: logsumexp subtracts the row maximum before exponentiating, so a
temperature of 0.01 (logits up to 100) never overflows, even in bfloat16.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import warnings
from numbers import Real

import torch
import torch.nn.functional as F

IMPLS = ("auto", "torch", "triton")
_CHECK_FINITE = contextvars.ContextVar("course_lib_check_finite", default=True)


@contextlib.contextmanager
def skip_finite_check():
    """Inside, `validate_embeddings` skips its NaN/inf check (shapes and dtypes are still checked).

    For a training step: the check reads the tensor's values, so on a GPU the CPU would wait for the
    device at every call, and the training run (`course_lib.training`) checks the loss itself, once per
    read of the per-step values. Direct calls keep the check and its message.
    """
    token = _CHECK_FINITE.set(False)
    try:
        yield
    finally:
        _CHECK_FINITE.reset(token)


def validate_temperature(temperature: float) -> float:
    """Return `temperature` as a float, or raise if it is not a finite number > 0."""
    if isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1:
            raise ValueError(f"temperature must be a single number, got a tensor of shape {tuple(temperature.shape)}.")
        temperature = temperature.item()
    if isinstance(temperature, bool) or not isinstance(temperature, Real):
        raise TypeError(f"temperature must be a number > 0, got {type(temperature).__name__}.")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature}. "
            "Typical values are 0.05-1.0 (SimCLR uses 0.5 at batch 256, 0.1-0.2 for large batches)."
        )
    return float(temperature)


def validate_embeddings(z: torch.Tensor, name: str = "z", paired: bool = True) -> None:
    """Raise a readable error unless `z` is a finite floating (rows, D) tensor; with `paired`, rows = 2N."""
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (2N, D), got {type(z).__name__}.")
    if z.dim() != 2:
        hint = " Did you forget to flatten, or pass a single embedding? Use z.view(len(z), -1)." if z.dim() != 1 else (
            " A 1-D tensor is one embedding; stack the 2N view embeddings into rows."
        )
        raise ValueError(f"{name} must be 2-D, shape (2N, D), got shape {tuple(z.shape)}.{hint}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (float32, bfloat16, ...), got {z.dtype}.")
    rows, dim = z.shape
    if dim == 0:
        raise ValueError(f"{name} has shape {tuple(z.shape)}: the embedding dimension D must be at least 1.")
    if paired and (rows < 2 or rows % 2):
        raise ValueError(
            f"{name} must hold 2N rows, the two views of N images (rows i and i + N are a pair), "
            f"got {rows} rows. Concatenate both views: z = torch.cat([z1, z2]) with z1, z2 of shape (N, D)."
        )
    if _CHECK_FINITE.get() and not torch.isfinite(z).all():
        bad = (~torch.isfinite(z)).any(dim=1).nonzero().flatten()[:5].tolist()
        raise ValueError(
            f"{name} contains NaN or inf (first bad rows: {bad}). The encoder has probably diverged: "
            "lower the learning rate, check the inputs for NaN, or resume from the last checkpoint."
        )


def positive_index(rows: int, device: torch.device | None = None) -> torch.Tensor:
    """(2N,) int64: the row of each view's positive partner, i <-> i + N."""
    n = rows // 2
    return torch.cat([torch.arange(n, rows, device=device), torch.arange(0, n, device=device)])


def nt_xent_reference(z: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent, materialising the (2N, 2N) similarity matrix. Inputs are not validated here.

    z: (2N, D) float, any scale (rows are L2-normalised inside). Returns a scalar, the mean over 2N
    rows, in z's dtype. Memory is O(N^2): see course_lib.kernels for the O(N * D) fused version.
    """
    rows = z.shape[0]
    zn = F.normalize(z, dim=1)                                          # (2N, D), unit rows
    logits = zn @ zn.T / temperature                                    # (2N, 2N), s(i, j) / t
    # A view is not its own negative: drop the diagonal before the softmax.
    self_mask = torch.eye(rows, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    # Cross-entropy = logsumexp(row) - logit of the positive; F.cross_entropy uses the stable form.
    return F.cross_entropy(logits, positive_index(rows, z.device))


def nt_xent(z: torch.Tensor, temperature: float = 0.5, impl: str = "auto") -> torch.Tensor:
    """NT-Xent loss of a (2N, D) batch of views; positives are rows i and i + N. Returns a scalar.

    impl: "torch" is the reference above; "triton" is the fused kernel (CUDA, or the Triton
    interpreter with TRITON_INTERPRET=1); "auto" picks the kernel where it was measured to pay off.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}.")
    temperature = validate_temperature(temperature)
    validate_embeddings(z)
    if z.shape[0] == 2:
        warnings.warn("NT-Xent of a batch of one image (2N = 2 views) is always 0: each view's only candidate is its "
                      "positive, so there is no negative to push away and nothing to learn. Use batches of several "
                      "images.", stacklevel=2)
    if impl == "torch":
        return nt_xent_reference(z, temperature)
    from course_lib.kernels import nt_xent as fused  # lazy: Triton is optional and slow to import

    if impl == "auto" and not fused.prefer_fused(z):
        return nt_xent_reference(z, temperature)
    return fused.nt_xent_fused(z, temperature)


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """One-directional InfoNCE: each anchor must pick its positive among all N positives.

    anchors, positives: (N, D) float; row i of `positives` is the positive of anchor i and the other
    N - 1 rows are its negatives. Rows are L2-normalised inside. Returns a scalar.
    The estimate log(N) - loss is a lower bound on the mutual information, so it can never exceed log(N).
    """
    temperature = validate_temperature(temperature)
    validate_embeddings(anchors, "anchors", paired=False)
    validate_embeddings(positives, "positives", paired=False)
    if anchors.shape != positives.shape:
        raise ValueError(
            f"anchors and positives must be pairs of the same shape (N, D), got {tuple(anchors.shape)} "
            f"and {tuple(positives.shape)}: row i of each must come from the same image."
        )
    logits = F.normalize(anchors, dim=1) @ F.normalize(positives, dim=1).T / temperature  # (N, N)
    return F.cross_entropy(logits, torch.arange(len(anchors), device=anchors.device))


def supcon(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020, their L_out): NT-Xent where every view
    of the same class is a positive. Row i averages -log softmax_i(p) over its positives p != i.

    z: (M, D) float, any scale; labels: (M,) int64. Each row needs at least one positive (a second view
    of its image always is one). With labels = image index (the two views of an image share a label and
    nothing else does) it is NT-Xent exactly. Returns a scalar.
    """
    validate_embeddings(z, paired=False)
    temperature = validate_temperature(temperature)
    if labels.shape != z.shape[:1]:
        raise ValueError(f"labels must be (M,) = ({len(z)},), one per row of z; got {tuple(labels.shape)}.")
    rows = len(z)
    zn = F.normalize(z, dim=1)
    self_mask = torch.eye(rows, dtype=torch.bool, device=z.device)
    log_prob = (zn @ zn.T / temperature).masked_fill(self_mask, float("-inf")).log_softmax(dim=1)   # (M, M)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positives.sum(dim=1)
    if bool((count == 0).any()):
        raise ValueError("every row of z needs a positive: another row with its label (e.g. the other view of "
                         "its image); pass the two views of each image together.")
    return -(log_prob.masked_fill(~positives, 0.0).sum(dim=1) / count).mean()


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Alignment (Wang & Isola, 2020): E ||f(x) - f(y)||^alpha over positive pairs; lower is better.

    x, y: (N, D) embeddings of the two views (L2-normalised inside). Returns a scalar in [0, 2^alpha].
    """
    validate_embeddings(x, "x", paired=False)
    validate_embeddings(y, "y", paired=False)
    if x.shape != y.shape:
        raise ValueError(f"x and y must be positive pairs of the same shape (N, D), got {tuple(x.shape)} and {tuple(y.shape)}.")
    return (F.normalize(x, dim=1) - F.normalize(y, dim=1)).norm(dim=1).pow(alpha).mean()


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Uniformity (Wang & Isola, 2020): log E exp(-t ||f(x) - f(y)||^2) over distinct pairs; lower is better.

    x: (N, D) embeddings, N >= 2 (L2-normalised inside). Computed as a logsumexp for stability.
    Returns a scalar in [-4t, 0]; the uniform distribution on the sphere minimises it.
    """
    validate_embeddings(x, "x", paired=False)
    if len(x) < 2:
        raise ValueError(f"uniformity needs at least 2 embeddings, got {len(x)}.")
    sq_dist = torch.pdist(F.normalize(x, dim=1)).pow(2)                  # (N (N - 1) / 2,)
    return torch.logsumexp(-t * sq_dist, dim=0) - math.log(sq_dist.numel())


__all__ = [
    "nt_xent", "nt_xent_reference", "info_nce", "supcon", "alignment", "uniformity",
    "positive_index", "validate_embeddings", "validate_temperature", "skip_finite_check",
]
