"""Exercises of notebook 03 (SimCLR on CIFAR-10): the weighted kNN classifier, and why the head is dropped."""

from __future__ import annotations

import torch

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.contrastive.evaluate import weighted_knn


def _knn_case(n: int, d: int, m: int, k: int, t: float, c: int, scale: float = 1.0):
    def make(gen: torch.Generator) -> tuple:
        train = torch.randn(n, d, generator=gen) * scale
        labels = torch.randint(0, c, (n,), generator=gen)
        test = torch.randn(m, d, generator=gen) * scale
        return train, labels, test, k, t, c
    return make


def _knn_reference(train_features, train_labels, test_features, k, temperature, num_classes):
    return weighted_knn(train_features, train_labels, test_features, k, temperature, num_classes)


register(Exercise(
    name="weighted_knn",
    reference=_knn_reference,
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
    rtol=1e-4, atol=1e-5,
    solution='''def weighted_knn(train_features, train_labels, test_features, k, temperature, num_classes):
    if not 1 <= k <= len(train_features):
        raise ValueError(f"k must be between 1 and {len(train_features)}, got {k}")
    train = F.normalize(train_features, dim=1)                 # (N, D)
    test = F.normalize(test_features, dim=1)                   # (M, D)
    sim, idx = (test @ train.T).topk(k, dim=1)                 # (M, k)
    weights = (sim / temperature).exp()                        # (M, k)
    scores = torch.zeros(len(test), num_classes)
    return scores.scatter_add_(1, train_labels[idx], weights)  # (M, C)
''',
))


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
    solution="b: " + HEAD_CHOICES["b"] + " (Chen et al., 2020, section 4.2: the representation before the head "
             "is more than 10 points better in linear evaluation.)",
    compare=_head_compare,
))


def check_weighted_knn(fn):
    """fn(train_features (N, D), train_labels (N,), test_features (M, D), k, temperature, num_classes) -> (M, C)."""
    return check("weighted_knn", fn)


def check_projection_head(fn):
    """fn() -> the letter of your answer, e.g. "a"."""
    return check("projection_head", fn)


__all__ = ["check_weighted_knn", "check_projection_head", "HEAD_CHOICES"]
