"""Exercise of notebook 03 (reading an embedding): how often do a point's nearest neighbours share its label?"""

from __future__ import annotations

import torch

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.explore.embedding import neighbour_label_agreement


def _features(gen: torch.Generator, n: int, d: int, classes: int, spread: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-structured features whose rows have very different norms, so Euclidean neighbours differ from cosine ones."""
    labels = torch.randint(classes, (n,), generator=gen)
    centres = torch.randn(classes, d, generator=gen)
    x = centres[labels] + spread * torch.randn(n, d, generator=gen)
    scale = torch.exp(2 * torch.rand(n, 1, generator=gen))  # norms from 1x to 7x: cosine ignores them
    return x * scale, labels


_SOLUTION = '''def neighbour_label_agreement(features, labels, k):
    f = torch.nn.functional.normalize(features.float(), dim=1)   # unit rows: dot product = cosine
    sims = f @ f.T                                                # (N, N) cosine similarities
    sims.fill_diagonal_(-float("inf"))                           # a point is not its own neighbour
    neighbours = sims.topk(k, dim=1).indices                      # (N, k) most similar first
    return (labels[neighbours] == labels[:, None]).float().mean().item()
'''

register(Exercise(
    name="neighbour_label_agreement",
    reference=neighbour_label_agreement,
    cases=[
        Case("clustered features, k=5", lambda g: (*_features(g, 60, 16, 4, 0.8), 5)),
        Case("overlapping classes, k=10", lambda g: (*_features(g, 80, 8, 5, 2.0), 10)),
        Case("k=1", lambda g: (*_features(g, 40, 12, 3, 1.5), 1)),
        Case("rows of very different norms (cosine, not Euclidean)", lambda g: (*_features(g, 50, 6, 2, 3.0), 4)),
    ],
    hints=[
        "Cosine similarity of every pair is one matrix product once each row has length 1: "
        "torch.nn.functional.normalize(features, dim=1), then f @ f.T.",
        "Each point is its own most similar point (cosine 1): set the diagonal to -inf before taking the top k.",
        "sims.topk(k, dim=1).indices gives the (N, k) neighbour indices; labels[neighbours] their labels. "
        "Compare with labels[:, None] and average over all N * k pairs; return a Python float (.item()).",
    ],
    rtol=1e-6,
    atol=1e-6,
    solution=_SOLUTION,
))


def check_neighbour_label_agreement(fn):
    return check("neighbour_label_agreement", fn)


__all__ = ["check_neighbour_label_agreement"]
