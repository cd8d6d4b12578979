"""Collapse: how to see it (alignment, uniformity, effective rank) and how SimSiam avoids it without negatives.

    stats = collapse_metrics(z1, z2)      # {"alignment", "uniformity", "effective_rank", "std"} of a batch
    predictor = Predictor(dim=64, hidden=32)
    loss = simsiam_loss(predictor(z1), predictor(z2), z1, z2)

A loss that only pulls the two views of an image together (alignment alone) has a trivial minimum: map
every image to the same point. Four numbers of the L2-normalised projections show it happening:

- alignment  E ||z1 - z2||^2 over positive pairs: falls to 0 either way, so it cannot tell learning from
  collapse (Wang & Isola, 2020);
- uniformity log E exp(-2 ||zi - zj||^2) over distinct images: 0 when every point is the same, about
  -3.9 for points spread evenly on a sphere of a few dozen dimensions;
- effective rank exp(entropy of the normalised singular values) of the (N, D) matrix (Roy & Vetterli,
  2007; used on embeddings as RankMe by Garrido et al., 2023): 1 for a single point or direction,
  up to D when every direction is used;
- std  the per-dimension standard deviation of the normalised projections, averaged over dimensions:
  0 when collapsed, about 1/sqrt(D) when spread (Chen & He, 2021, who plot exactly this).

SimSiam (Chen & He, CVPR 2021) keeps the alignment-only loss but adds a predictor MLP on one branch
and stops the gradient on the other: D(p1, sg(z2)) with D the negative cosine. Without the stop-
gradient it collapses; with it, it does not, though nothing in the loss forbids the constant solution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.contrastive.losses import alignment, uniformity, validate_embeddings


def spectrum(z: torch.Tensor) -> torch.Tensor:
    """(min(N, D),) float32 singular values of the L2-normalised rows of z (N, D), largest first."""
    validate_embeddings(z, paired=False)
    return torch.linalg.svdvals(F.normalize(z.detach().float(), dim=1))


def effective_rank(singular_values: torch.Tensor) -> float:
    """exp(H(p)) with p = s / sum(s), for singular values s (k,) >= 0: between 1 and k.

    All mass on one value gives 1 (a collapsed batch); k equal values give k. An all-zero input
    (no signal at all) also counts as rank 1, the collapsed end.
    """
    s = singular_values.detach().double().clamp_min(0)
    if s.dim() != 1 or s.numel() == 0:
        raise ValueError(f"expected a non-empty 1-D tensor of singular values, got shape {tuple(s.shape)}.")
    total = s.sum()
    if total == 0:
        return 1.0
    p = s / total
    entropy = -(p * p.clamp_min(1e-300).log()).sum()   # 0 * log 0 = 0
    return math.exp(entropy.item())


def collapse_metrics(z1: torch.Tensor, z2: torch.Tensor) -> dict[str, float]:
    """Alignment, uniformity, effective rank and per-dimension std of a batch of positive pairs.

    z1, z2: (N, D) projections of the two views of N images (normalised inside). Uniformity, the rank
    and the std are taken over z1, one view per image, so a pair's two views do not count as spread.
    """
    with torch.no_grad():
        z1, z2 = z1.detach().float(), z2.detach().float()
        return {
            "alignment": alignment(z1, z2).item(),
            "uniformity": uniformity(z1).item(),
            "effective_rank": effective_rank(spectrum(z1)),
            "std": F.normalize(z1, dim=1).std(dim=0).mean().item(),
        }


class Predictor(nn.Module):
    """SimSiam's predictor h: z (B, dim) -> p (B, dim). Linear, BatchNorm, ReLU, Linear: a bottleneck MLP
    (the paper's is 2048 -> 512 -> 2048, hidden = dim / 4)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        if dim < 1 or hidden < 1:
            raise ValueError(f"the predictor needs dim >= 1 and hidden >= 1, got dim={dim}, hidden={hidden}.")
        self.dim = dim
        self.net = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(
                f"the predictor maps projections of size {self.dim}, got a tensor of shape {tuple(z.shape)}. "
                f"Build it with Predictor(dim=z.shape[1], ...): its size must match the projection head's out_dim.")
        return self.net(z)


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """SimSiam's symmetric loss: (D(p1, sg(z2)) + D(p2, sg(z1))) / 2, D the mean negative cosine. In [-1, 1].

    p1, p2: (N, D) predictions of the two views; z1, z2: (N, D) their projections. sg is the stop-gradient
    (detach): no gradient flows into z1 or z2 through this loss, only through p1 and p2.
    """
    for name, t in (("p1", p1), ("p2", p2), ("z1", z1), ("z2", z2)):
        validate_embeddings(t, name, paired=False)
    if not p1.shape == p2.shape == z1.shape == z2.shape:
        raise ValueError(f"p1, p2, z1, z2 must share one shape (N, D), got {tuple(p1.shape)}, {tuple(p2.shape)}, "
                         f"{tuple(z1.shape)}, {tuple(z2.shape)}: the predictor's output must match the projection.")
    d12 = -F.cosine_similarity(p1, z2.detach(), dim=1).mean()
    d21 = -F.cosine_similarity(p2, z1.detach(), dim=1).mean()
    return (d12 + d21) / 2


__all__ = ["spectrum", "effective_rank", "collapse_metrics", "Predictor", "simsiam_loss"]
