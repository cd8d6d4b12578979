"""Worked solutions of the contrastive exercises (notebooks 00 and 01), one per exercise.

Each function is named as the learner's function in the notebook, so `solution("nt_xent")` prints
exactly the code a learner would write. The notebooks' solution cells are these bodies, and the
tests check that every solution passes its own check. The checks compare against the library
(`course_lib.contrastive.losses`) wherever the library has the same function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def l2_normalize(x):
    norms = x.norm(dim=1, keepdim=True)                              # (N, 1), broadcasts over D
    return x / norms.clamp_min(1e-12)                                # a zero row stays 0 instead of 0/0 = NaN


def softmax_cross_entropy(logits, targets):
    m = logits.max(dim=1, keepdim=True).values                       # (B, 1), each row's largest logit
    log_z = m.squeeze(1) + (logits - m).exp().sum(dim=1).log()       # (B,), logsumexp: every exp is <= 1
    picked = logits.gather(1, targets[:, None]).squeeze(1)           # (B,), the logit of the right class
    return (log_z - picked).mean()


def nt_xent(z, temperature=0.5):
    if z.dim() != 2 or z.shape[0] % 2:
        raise ValueError(f"z must have shape (2N, D) with an even number of rows, got {tuple(z.shape)}.")
    rows = z.shape[0]
    n = rows // 2
    zn = F.normalize(z, dim=1)                                       # (2N, D), unit rows
    logits = zn @ zn.T / temperature                                 # (2N, 2N), cosine similarity / t
    self_mask = torch.eye(rows, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))            # a view is not its own negative
    targets = (torch.arange(rows, device=z.device) + n) % rows       # the positive of row i is row i + N (mod 2N)
    return F.cross_entropy(logits, targets)                          # logsumexp inside: stable


def similarity_gradient(sim, temperature):
    rows = sim.shape[0]
    n = rows // 2
    self_mask = torch.eye(rows, dtype=torch.bool, device=sim.device)
    p = (sim / temperature).masked_fill(self_mask, float("-inf")).softmax(dim=1)  # (2N, 2N), 0 on the diagonal
    one_hot = torch.zeros_like(p)
    rows_idx = torch.arange(rows, device=sim.device)
    one_hot[rows_idx, (rows_idx + n) % rows] = 1.0                   # 1 at each row's positive
    return (p - one_hot) / (temperature * rows)                      # 1/t from the logits, 1/(2N) from the mean


def info_nce_bound(anchors, positives, temperature=0.1):
    if anchors.shape != positives.shape:
        raise ValueError(f"anchors and positives must have the same shape (N, D), got "
                         f"{tuple(anchors.shape)} and {tuple(positives.shape)}.")
    a = F.normalize(anchors, dim=1)                                  # (N, D)
    p = F.normalize(positives, dim=1)                                # (N, D)
    logits = a @ p.T / temperature                                   # (N, N): anchor i against every positive j
    loss = F.cross_entropy(logits, torch.arange(len(a), device=a.device))
    return math.log(len(a)) - loss                                   # can never exceed log N: the loss is >= 0


def alignment(x, y, alpha=2.0):
    if x.shape != y.shape:
        raise ValueError(f"x and y must be positive pairs of the same shape (N, D), got {tuple(x.shape)} and {tuple(y.shape)}.")
    diff = F.normalize(x, dim=1) - F.normalize(y, dim=1)             # (N, D)
    return diff.norm(dim=1).pow(alpha).mean()


def uniformity(x, t=2.0):
    sq_dist = torch.pdist(F.normalize(x, dim=1)).pow(2)              # (N (N - 1) / 2,), each distinct pair once
    return torch.logsumexp(-t * sq_dist, dim=0) - math.log(len(sq_dist))  # log of the mean of exp(-t d^2)


def fixed_positive_pairs(z, temperature=0.5):
    rows = len(z)
    zn = F.normalize(z, dim=1)                                       # (2N, D)
    logits = (zn @ zn.T / temperature).masked_fill(torch.eye(rows, dtype=torch.bool, device=z.device), float("-inf"))
    targets = (torch.arange(rows, device=z.device) + rows // 2) % rows  # fixed: i <-> i + N, as torch.cat([z1, z2]) stacks them
    return F.cross_entropy(logits, targets)


def fixed_similarity_matrix(z):
    zn = F.normalize(z, dim=1)                                       # (2N, D)
    return F.cosine_similarity(zn.unsqueeze(1), zn.unsqueeze(0), dim=-1)  # fixed: (2N, 1, D) vs (1, 2N, D) -> (2N, 2N)


def fixed_cached_loss(z, temperature=0.5):
    rows = len(z)
    zn = F.normalize(z, dim=1)                                       # fixed: the logits come from this batch, every call
    logits = (zn @ zn.T / temperature).masked_fill(torch.eye(rows, dtype=torch.bool, device=z.device), float("-inf"))
    return F.cross_entropy(logits, (torch.arange(rows, device=z.device) + rows // 2) % rows)


def fixed_meta_update(w, x_support, y_support, x_query, y_query, inner_lr, meta_lr):
    w = w.detach().requires_grad_(True)                              # (D,), the meta-parameters
    support_loss = F.mse_loss(x_support @ w, y_support)
    (g,) = torch.autograd.grad(support_loss, w, create_graph=True)   # keep the graph: MAML differentiates through it
    w_task = w - inner_lr * g                                        # inner step: adapt to this task
    query_loss = F.mse_loss(x_query @ w_task, y_query)
    (meta_g,) = torch.autograd.grad(query_loss, w)                   # d(query loss after adapting) / dw
    return (w - meta_lr * meta_g).detach()                           # fixed: descend, subtract the gradient


class FixedNet(nn.Module):
    def __init__(self, in_channels=1, image_size=28, n_classes=5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (B, 16, S // 2, S // 2)
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),            # (B, 32, S // 4, S // 4)
        )
        side = image_size // 2 // 2                                  # fixed: each 2x2 pooling halves the side (floor)
        self.head = nn.Linear(32 * side * side, n_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))                # (B, 32 * side * side) -> (B, n_classes)
