"""Exercises of notebook 03 (SimCLR on CIFAR-10): the weighted kNN classifier, why the head is dropped, and
how often an embedding's nearest neighbours share a label. The references are the library's own functions."""

from __future__ import annotations

import torch

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.contrastive.evaluate import weighted_knn
from course_lib.explore.embedding import neighbour_label_agreement


# ---------------------------------------------------------------- weighted_knn


def _knn_case(n: int, d: int, m: int, k: int, t: float, c: int, scale: float = 1.0):
    def make(gen: torch.Generator) -> tuple:
        train = torch.randn(n, d, generator=gen) * scale
        labels = torch.randint(0, c, (n,), generator=gen)
        test = torch.randn(m, d, generator=gen) * scale
        return train, labels, test, k, t, c
    return make


register(Exercise(
    name="weighted_knn",
    reference=weighted_knn,
    rtol=1e-4, atol=1e-5,
    cases=[
        Case("small batch", _knn_case(30, 8, 7, 5, 0.1, 4)),
        Case("k = 1, the nearest neighbour alone", _knn_case(20, 5, 6, 1, 0.1, 3)),
        Case("k = N, every training row votes", _knn_case(12, 4, 5, 12, 0.5, 3)),
        Case("features not normalised (scaled by 7)", _knn_case(40, 16, 9, 10, 0.1, 5, scale=7.0)),
        Case("k larger than the training set", _knn_case(6, 4, 2, 7, 0.1, 2), raises=ValueError),
    ],
    hints=[
        "L2-normalise both feature sets (F.normalize(x, dim=1)); then test @ train.T is the (M, N) cosine similarity.",
        "sim.topk(k, dim=1) gives the k largest similarities and their indices; train_labels[indices] is (M, k).",
        "Votes: weights = exp(sim / temperature), (M, k). Add each weight into its neighbour's class column: "
        "torch.zeros(M, num_classes).scatter_add_(1, neighbour_labels, weights).",
        "Raise ValueError when k is not between 1 and the number of training rows.",
    ],
))


def check_weighted_knn(fn):
    """fn(train_features (N, D), train_labels (N,), test_features (M, D), k, temperature, num_classes) -> (M, C)."""
    return check("weighted_knn", fn)


# ---------------------------------------------------------------- projection_head


HEAD_CHOICES = {
    "a": "Running the head at test time would be too slow.",
    "b": "The loss makes z invariant to the augmentations, so the head learns to discard information "
         "(colour, orientation, position) that h still holds and that other tasks need.",
    "c": "z cannot be L2-normalised, so cosine similarity is undefined on it.",
    "d": "The head's weights are re-initialised after training.",
}
_HEAD_FEEDBACK = {
    "a": "the head is two small linear layers, far cheaper than the encoder: speed is not the reason.",
    "c": "z is L2-normalised inside the loss itself; cosine similarity on z is exactly what training optimised.",
    "d": "nothing re-initialises the head; its trained weights are in the checkpoint.",
}


def _head_reference() -> str:
    """The answer key (Chen et al., 2020, section 4.2: h is more than 10 points better than z in linear evaluation)."""
    return "b"


def _head_compare(got, want) -> str | None:
    if not isinstance(got, str) or got.strip().lower() not in HEAD_CHOICES:
        return f"return one letter among {sorted(HEAD_CHOICES)} as a string, got {got!r}."
    answer = got.strip().lower()
    return None if answer == want else f"not '{answer}': {_HEAD_FEEDBACK[answer]}"


register(Exercise(
    name="projection_head",
    reference=_head_reference,
    cases=[Case("your answer", lambda gen: ())],
    hints=[
        "Think about what the loss asks of z: two views of an image, with different colours and crops, must map "
        "to the same point.",
        "If z must be the same for a red car and its gray-scaled copy, can z still tell red from gray? The "
        "notebook measures kNN on h and on z: compare them.",
    ],
    compare=_head_compare,
))


def check_projection_head(fn):
    """fn() -> the letter of your answer, e.g. "a"."""
    return check("projection_head", fn)


# ---------------------------------------------------------------- neighbour_label_agreement


def _features(gen: torch.Generator, n: int, d: int, classes: int, spread: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-structured features whose rows have very different norms, so Euclidean neighbours differ from cosine ones."""
    labels = torch.randint(classes, (n,), generator=gen)
    centres = torch.randn(classes, d, generator=gen)
    x = centres[labels] + spread * torch.randn(n, d, generator=gen)
    scale = torch.exp(2 * torch.rand(n, 1, generator=gen))  # norms from 1x to 7x: cosine ignores them
    return x * scale, labels


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
    rtol=1e-6, atol=1e-6,
))


def check_neighbour_label_agreement(fn):
    """fn(features (N, D), labels (N,), k) -> float: the share of (point, cosine neighbour) pairs with one label."""
    return check("neighbour_label_agreement", fn)


__all__ = ["check_weighted_knn", "check_projection_head", "check_neighbour_label_agreement", "HEAD_CHOICES"]
