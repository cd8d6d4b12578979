"""Exercises of notebook 03 (SimCLR on CIFAR-10): the weighted kNN classifier, why the head is dropped, how
often an embedding's nearest neighbours share a label, and the self-check (its training step is in
simclr_step.py). The references are the library's own functions."""

from __future__ import annotations


import torch
from torch import nn

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.quiz import Choice, Number, self_check
from course_lib.contrastive.evaluate import weighted_knn
from course_lib.contrastive.losses import nt_xent
from course_lib.contrastive.models import ProjectionHead
from course_lib.explore.embedding import neighbour_label_agreement
from course_lib.optim import LARS


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
    library=(ProjectionHead,),
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


# ---------------------------------------------------------------- self_check_03

IDEAL_IMAGES, IDEAL_TEMPERATURE = 256, 0.2  # question 1: the smoke tier's batch and temperature


def ideal_loss(images: int = IDEAL_IMAGES, temperature: float = IDEAL_TEMPERATURE) -> float:
    """The library's NT-Xent of an ideal batch: each view equal to its partner, orthogonal to every other view."""
    one_hot = torch.eye(images)  # image i -> the i-th axis: cosine 1 with itself, 0 with every other image
    return nt_xent(torch.cat([one_hot, one_hot]), temperature).item()


def lars_step_length(weight_norm: float = 3.0, grad_norm: float = 50.0, lr: float = 0.5) -> float:
    """||w_after - w_before|| of the kit's LARS (default trust coefficient, no weight decay) on its first step for
    a (4, 5) weight of norm `weight_norm` whose gradient has norm `grad_norm`."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 5, generator=gen)
    w = nn.Parameter(w * weight_norm / w.norm())
    g = torch.randn(4, 5, generator=gen)
    w.grad = g * grad_norm / g.norm()
    before = w.detach().clone()
    LARS([w], lr=lr).step()
    return (w.detach() - before).norm().item()


check_self_check_03 = self_check("self_check_03", {
    1: Number(ideal_loss,
              why=f"row i's logits are 1/0.2 = 5 for its positive and 0 for each of the {2 * IDEAL_IMAGES - 2} "
                  f"negatives, so the loss is log(1 + {2 * IDEAL_IMAGES - 2} e^-5) = {ideal_loss():.3f}, not 0: every "
                  "negative still counts e^0 = 1 against the positive's e^5. Negatives score lower only with negative "
                  f"cosines, and {IDEAL_IMAGES} directions cannot all point away from one another (at best every "
                  f"cosine is -1/{IDEAL_IMAGES - 1}), so the floor stays near this value; it grows with the batch "
                  "and with the temperature.",
              hint="each row's logits are cosine / temperature: 5 for the positive, 0 for each of the 510 negatives, "
                   "and its own entry is left out. The loss is -log(e^5 / (e^5 + 510)). Or build z = "
                   "torch.cat([torch.eye(256)] * 2) and call nt_xent(z, 0.2)."),
    2: Choice("b", why="the probe fits one weight per feature and class from the training labels, so it can "
                       "lean on the dimensions that separate classes and ignore the rest; kNN votes with cosine "
                       "similarity, where every dimension of h counts as it is.",
              wrong={"a": "the probe is trained on the training images' features only; the test images are only "
                          "classified, exactly as by kNN.",
                     "c": "both use h, the encoder's output (section 8 runs kNN on z separately)."}),
    3: Number(lars_step_length,
              why="the trust ratio eta ||w|| / ||g|| rescales the gradient to length eta ||w||, so the first step "
                  "is lr * eta * ||w|| = 0.5 * 0.02 * 3 = 0.03 whatever the gradient's norm: each layer moves by "
                  "the same fraction (lr * eta = 1%) of its weights, which is why one learning rate suits every "
                  "layer, even when the gradients of a large batch are small next to the weights.",
              hint="the trust ratio multiplies the gradient: what is the length of (eta ||w|| / ||g||) g? On the "
                   "first step the momentum buffer is that vector, and the step is lr times it."),
    4: Choice("b", why="nt_xent takes rows i and i + N as a positive pair; after stack-then-reshape those hold views "
                       "of two different images, so the encoder is trained to pull unrelated images together "
                       "(and to push image i's two views apart).",
              wrong={"a": "the rows are the same set, but their order is what tells nt_xent which rows are pairs.",
                     "c": "the shape is (2N, D), exactly what nt_xent accepts: nothing raises, the loss is just "
                          "the wrong one."}),
}, hints=[
    "Question 1 is about the loss after section 6's training; 2 about section 7; 3 about the LARS section; 4 about "
    "your simclr_step.",
    "Question 3: on the first step the momentum buffer is the scaled gradient itself; compute its length.",
])


__all__ = ["check_weighted_knn", "check_projection_head", "check_neighbour_label_agreement",
           "check_self_check_03", "HEAD_CHOICES"]
