"""Exercises of notebook 07 (contrastive meets meta-learning): NT-Xent read as few-shot episodes, the
prototype classifier, a task made from unlabeled images, and (optional) the supervised contrastive loss.

The references are the library's own functions, except `umtra_task`, one task of `course_lib.meta.umtra`
written with the exact random draws the exercise asks for, so that a learner's task can be compared.
"""

from __future__ import annotations

import math

import torch

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.quiz import Choice, Number, self_check
from course_lib.contrastive.losses import nt_xent, nt_xent_reference, supcon
from course_lib.kernels.nt_xent import nt_xent_fused
from course_lib.meta.protonet import protonet_logits, prototypes
from course_lib.meta.umtra import umtra_episodes, umtra_sampler

# ---------------------------------------------------------------- nt_xent_as_episodes


def _views(n: int, d: int, t: float):
    return lambda gen: (torch.randn(2 * n, d, generator=gen, dtype=torch.float64), t)


register(Exercise(
    name="nt_xent_as_episodes",
    reference=nt_xent_reference,
    cases=[
        Case("N = 4 images, D = 8, t = 0.5", _views(4, 8, 0.5), grad=True),
        Case("N = 16, D = 32, t = 0.1", _views(16, 32, 0.1), grad=True),
        Case("N = 1: one candidate, the partner itself", _views(1, 5, 0.2)),
        Case("N = 3, D = 2, t = 1", _views(3, 2, 1.0)),
    ],
    hints=[
        "For view i the support set is every other view, one example per class, so 2N - 1 classes; the "
        "query is view i and its class is its partner (i + N) mod 2N.",
        "Score each class by cosine similarity over t: with zn = F.normalize(z, dim=1), row i of zn @ zn.T / t, "
        "without column i (the query is not in its own support set). That row is the episode's logits.",
        "Drop column i by setting the diagonal to -inf; then F.cross_entropy(logits, partner) averages the "
        "2N episodes' losses, and partner = (torch.arange(2N) + N) % (2N).",
    ],
    rtol=1e-6, atol=1e-8,
    library=(nt_xent, nt_xent_fused),
))


def check_nt_xent_as_episodes(fn):
    """fn(z (2N, D), temperature) -> scalar: the mean cross-entropy of the 2N one-shot episodes."""
    return check("nt_xent_as_episodes", fn)


# ---------------------------------------------------------------- prototype_logits


def _prototype_case(n_way: int, shots: int, queries: int, dim: int, metric: str, scale: float = 1.0):
    def make(gen: torch.Generator) -> tuple:
        support = scale * torch.randn(n_way * shots, dim, generator=gen, dtype=torch.float64)
        labels = torch.arange(n_way).repeat_interleave(shots)[torch.randperm(n_way * shots, generator=gen)]
        return support, labels, torch.randn(queries, dim, generator=gen, dtype=torch.float64), n_way, metric
    return make


register(Exercise(
    name="prototype_logits",
    reference=protonet_logits,
    cases=[
        Case("5-way 1-shot, squared Euclidean", _prototype_case(5, 1, 7, 16, "euclidean"), grad=True),
        Case("3-way 4-shot, labels shuffled, squared Euclidean", _prototype_case(3, 4, 5, 8, "euclidean"), grad=True),
        Case("5-way 2-shot, cosine", _prototype_case(5, 2, 6, 16, "cosine"), grad=True),
        Case("cosine ignores the features' scale (x 30)", _prototype_case(4, 3, 5, 8, "cosine", scale=30.0)),
    ],
    hints=[
        "A prototype is the mean support feature of a class: for class c, support[y_support == c].mean(0); "
        "stack them into (n_way, D). Labels may come in any order.",
        "euclidean: logits = -(squared distance) = -((query[:, None] - protos[None]) ** 2).sum(-1), (Q, N).",
        "cosine: normalise the support features first, average them per class, normalise the prototypes, then "
        "logits = F.normalize(query, dim=1) @ protos.T / 0.1 (the library's PROTOTYPE_TEMPERATURE).",
    ],
    rtol=1e-6, atol=1e-8,
    library=(protonet_logits, prototypes),
))


def check_prototype_logits(fn):
    """fn(support (S, D), y_support (S,), query (Q, D), n_way, metric) -> logits (Q, n_way)."""
    return check("prototype_logits", fn)


# ---------------------------------------------------------------- umtra_task


def umtra_task_reference(images: torch.Tensor, n_way: int, n_query: int, views, seed: int):
    """One N-way 1-shot task from unlabeled images (M, C, H, W): x_support (N, C, H, W), y_support (N,),
    x_query (N * n_query, C, H, W) grouped by class, y_query (N * n_query,). The classes are drawn by
    torch.randperm from a generator seeded with `seed` (a seed, not a generator: the check calls twice)."""
    picks = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n_way]
    support = images[picks]
    query = views(support.repeat_interleave(n_query, dim=0))
    labels = torch.arange(n_way)
    return support, labels, query, labels.repeat_interleave(n_query)


def _umtra_case(m: int, n_way: int, n_query: int, views):
    return lambda gen: (torch.rand(m, 1, 6, 6, generator=gen), n_way, n_query, views,
                        int(torch.randint(0, 2**31, (1,), generator=gen)))


def _shift_right(x: torch.Tensor) -> torch.Tensor:
    return torch.roll(x, 1, dims=-1)


register(Exercise(
    name="umtra_task",
    reference=umtra_task_reference,
    cases=[
        Case("5-way, 3 queries, views flip left-right", _umtra_case(40, 5, 3, lambda x: x.flip(-1))),
        Case("3-way, 1 query, views shift by a pixel", _umtra_case(10, 3, 1, _shift_right)),
        Case("every image is a class (N = M = 4)", _umtra_case(4, 4, 2, lambda x: 1 - x)),
    ],
    hints=[
        "Pick the classes with picks = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))"
        "[:n_way]: n_way distinct "
        "images, in random order. Image n of the picks is class n, and it is that class's one support example.",
        "Queries: n_query views of each support image, class by class: "
        "views(support.repeat_interleave(n_query, dim=0)).",
        "Labels: torch.arange(n_way) for the support, and the same repeated n_query times each "
        "(repeat_interleave) for the queries. Return (x_support, y_support, x_query, y_query).",
    ],
    rtol=0.0, atol=0.0,
    library=(umtra_episodes, umtra_sampler),
))


def check_umtra_task(fn):
    """fn(images (M, C, H, W), n_way, n_query, views, seed) -> (x_support, y_support, x_query, y_query)."""
    return check("umtra_task", fn)


# ---------------------------------------------------------------- supcon (optional)


def _supcon_case(m: int, d: int, classes: int, t: float, pairs: bool = False):
    def make(gen: torch.Generator) -> tuple:
        z = torch.randn(m, d, generator=gen, dtype=torch.float64)
        if pairs:  # labels = image index: the two views of an image share a label, nothing else does
            return z, torch.arange(m // 2).repeat(2), t
        labels = torch.arange(classes).repeat(m // classes)[torch.randperm(m, generator=gen)]
        return z, labels, t
    return make


register(Exercise(
    name="supcon",
    reference=supcon,
    cases=[
        Case("labels = image index (then it is NT-Xent)", _supcon_case(8, 6, 4, 0.5, pairs=True), grad=True),
        Case("3 classes, 4 views each", _supcon_case(12, 8, 3, 0.1), grad=True),
        Case("2 classes, 10 views each, t = 1", _supcon_case(20, 4, 2, 1.0)),
    ],
    hints=[
        "Same start as NT-Xent: zn = F.normalize(z, dim=1), logits = zn @ zn.T / t with the diagonal set to "
        "-inf, and log_prob = logits.log_softmax(dim=1).",
        "positives = (labels[:, None] == labels[None, :]) with the diagonal False. Row i's loss is minus the "
        "mean of log_prob[i] over its positives: (log_prob * positives).sum(1) / positives.sum(1), negated "
        "(mask the -inf diagonal to 0 first, or the product is NaN).",
        "Average over rows.",
    ],
    rtol=1e-6, atol=1e-8,
))


def check_supcon(fn):
    """fn(z (M, D), labels (M,), temperature) -> scalar: the supervised contrastive loss."""
    return check("supcon", fn)


def _all_distinct(n_way: int, n_classes: int) -> float:
    """Probability that n_way images drawn uniformly from n_classes equally large classes are of n_way
    different classes: prod_k (1 - k / n_classes), k = 0 .. n_way - 1."""
    return math.prod(1 - k / n_classes for k in range(n_way))


check_self_check_07 = self_check("self_check_07", {
    1: Number(lambda: 2 * 32 - 1, why="Each of the 64 views is an anchor whose episode has one candidate per other "
              "view: 63 classes, one example each, the positive the right one.",
              hint="an anchor is compared with every view of the batch except itself.", rtol=0.0),
    2: Choice("b", why="UMTRA takes N random unlabeled images as the N classes of a task and an augmentation of "
                       "each as its query: no label, no clustering.",
              wrong={"a": "clustering the embeddings into pseudo-labels is CACTUs (Hsu et al., 2019), another method.",
                     "c": "no label is used at all: that is what makes it unsupervised."}),
    3: Number(lambda: _all_distinct(5, 1200), why="prod_k (1 - k/1200) for k = 0..4 = 0.992: with 1,200 characters "
              "a random 5-way UMTRA task almost never holds two drawings of one character.",
              hint="draw the 5 characters one at a time: the k-th must differ from the k before it, probability "
                   "1 - k / 1200.", rtol=1e-3),
    4: Choice("b", why="With each image as its own class, the only other row sharing a label is the image's other "
                       "view: SupCon's positives reduce to NT-Xent's, and the two losses are equal (checked above).",
              wrong={"a": "SupCon still compares embeddings with each other; there is no class weight matrix.",
                     "c": "the triplet loss compares one positive with one negative, without a softmax over the batch."}),
}, hints=[
    "Questions 1 and 4 are in sections 1 and 8; 2 and 3 in the UMTRA section.",
    "For 3: the chance that the k-th character drawn differs from the k already drawn is 1 - k / 1200.",
])

__all__ = ["check_nt_xent_as_episodes", "check_prototype_logits", "check_supcon", "check_umtra_task",
           "umtra_task_reference", "check_self_check_07"]
