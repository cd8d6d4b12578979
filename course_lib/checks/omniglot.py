"""Exercises of notebook 06 (MAML on Omniglot, against ProtoNet): ProtoNet's logits, the 95% interval of an
accuracy over test tasks, and the notebook's self-check, self_check_06 (its first exercise, drawing an
episode, is in episodes.py). The references are the library's own functions,
`course_lib.meta.protonet.protonet_logits` and `course_lib.meta.train.mean_ci95`.
"""

from __future__ import annotations

import math

import torch

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.quiz import Choice, Number, self_check
from course_lib.meta.protonet import protonet_logits, prototypes
from course_lib.meta.train import mean_ci95

__all__ = ["check_protonet_logits", "check_accuracy_ci95", "check_self_check_06"]

# ---------------------------------------------------------------- protonet_logits
# fn(support (N*K, D), y_support (N*K,), query (Q, D), n_way) -> (Q, N): minus the squared Euclidean distance
# of each query to each class mean. The library's version (the reference) expands the square, a learner's
# usually subtracts: the two agree to float32 rounding, hence the tolerances.


def _embeddings(gen: torch.Generator, n_way: int, k_shot: int, n_query: int, dim: int, shuffle: bool):
    """(support (N*K, D), labels (N*K,), query (Q, D), n_way), float32; labels grouped by class unless `shuffle`."""
    labels = torch.arange(n_way).repeat_interleave(k_shot)
    if shuffle:
        labels = labels[torch.randperm(n_way * k_shot, generator=gen)]
    return (torch.randn(n_way * k_shot, dim, generator=gen), labels, torch.randn(n_query, dim, generator=gen), n_way)


def _protonet_case(n_way: int, k_shot: int, n_query: int, dim: int, shuffle: bool = False):
    return lambda gen: _embeddings(gen, n_way, k_shot, n_query, dim, shuffle)


def _query_on_a_prototype(gen: torch.Generator):
    """3-way 1-shot whose queries are the support rows themselves: each is at distance 0 from its prototype."""
    support, labels, _, n_way = _embeddings(gen, 3, 1, 3, 8, shuffle=False)
    return support, labels, support.clone(), n_way


def _protonet_variants(support, labels, query, n_way) -> dict[str, torch.Tensor]:
    """What the classic mistakes compute, to recognise them."""
    sq = -protonet_logits(support, labels, query, n_way)  # (Q, N) squared distances
    summed = torch.zeros(n_way, support.shape[1]).index_add_(0, labels, support)
    return {
        "sign": sq,
        "sqrt": -sq.sqrt(),
        "order": -torch.cdist(query, support.view(n_way, -1, support.shape[1]).mean(1)) ** 2,  # rows as given
        "sum": -torch.cdist(query, summed) ** 2,
    }


_PROTONET_BUGS = {
    "sign": "your logits are the squared distances themselves: a query closer to a prototype must get a LARGER "
            "logit, so return minus the squared distance.",
    "sqrt": "your logits are minus the Euclidean distance: ProtoNet uses minus the SQUARED distance (torch.cdist "
            "gives the distance; square it, or sum the squared differences).",
    "order": "your prototypes assume the support rows come grouped by class (a reshape to (N, K, D)); the labels can "
             "come in any order: average the rows whose label is c, support[y_support == c].mean(0).",
    "sum": "your prototypes are sums of the support embeddings, not means: divide by the K shots of each class.",
}


def _diagnose_protonet(fn, gen: torch.Generator) -> str | None:
    """Run `fn` on a 4-way 3-shot episode with shuffled labels and name the mistake it matches, if any."""
    args = _embeddings(gen, 4, 3, 6, 8, shuffle=True)
    got = fn(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
    if not isinstance(got, torch.Tensor) or got.shape != (6, 4):
        return None
    for bug, value in _protonet_variants(*args).items():
        if torch.allclose(got.detach().double(), value.double(), rtol=1e-3, atol=1e-3):
            return _PROTONET_BUGS[bug]
    return None


register(Exercise(
    name="protonet_logits",
    reference=protonet_logits,  # metric="euclidean", its default
    cases=[
        Case("5-way 1-shot, D = 16, 10 queries", _protonet_case(5, 1, 10, 16), grad=True),
        Case("5-way 5-shot, labels in random order", _protonet_case(5, 5, 7, 16, shuffle=True), grad=True),
        Case("20-way 1-shot, D = 64", _protonet_case(20, 1, 30, 64), grad=True),
        Case("3-way 4-shot, one query, D = 1", _protonet_case(3, 4, 1, 1, shuffle=True), grad=True),
        Case("queries equal to the support rows: logit 0 on their own class", _query_on_a_prototype),
    ],
    hints=[
        "Two steps: the prototype of class c is the mean of the support rows labelled c (stack them into (N, D)); "
        "then compare every query with every prototype.",
        "support[y_support == c].mean(dim=0) works whatever the order of the labels. Broadcasting "
        "query[:, None, :] - prototypes[None, :, :] gives every difference at once, (Q, N, D).",
        "logits = -(difference ** 2).sum(dim=-1): minus the squared distance, so the nearest prototype wins the "
        "softmax. No square root, and keep the minus sign.",
    ],
    rtol=1e-4, atol=1e-4,
    diagnose=_diagnose_protonet,
    library=(prototypes,),
))


def check_protonet_logits(fn):
    """fn(support (N*K, D) float32, y_support (N*K,) int64 in 0..N-1, query (Q, D) float32, n_way) -> (Q, N)
    float32: minus the squared Euclidean distance of each query to each class's mean support embedding."""
    return check("protonet_logits", fn)


# ---------------------------------------------------------------- accuracy_ci95
# fn(accuracies (T,)) -> (mean, half_width), the library's convention: half_width = 1.96 * s / sqrt(T) with s
# the SAMPLE standard deviation (T - 1 in the denominator), as `mean_ci95` computes for every reported score.


def _ci95_reference(accuracies: torch.Tensor) -> tuple[float, float]:
    score = mean_ci95(accuracies)
    return score.mean, score.ci95


def _task_accuracies(gen: torch.Generator, n_tasks: int, n_queries: int = 75) -> torch.Tensor:
    """(T,) float32 per-task accuracies: tasks of different difficulty, each scored on `n_queries` queries."""
    p = 0.75 + 0.24 * torch.rand(n_tasks, 1, generator=gen)  # each task's chance of a right answer
    return (torch.rand(n_tasks, n_queries, generator=gen) < p).float().mean(1)


def _accuracies_case(n_tasks: int):
    return lambda gen: (_task_accuracies(gen, n_tasks),)


# ratio of the learner's half-width to the right one -> the mistake that gives it, for T = 5 tasks
_CI_BUGS = {
    math.sqrt(4 / 5): "your half-width uses the population standard deviation (divide by T); the library uses "
                      "the sample standard deviation (divide by T - 1), tensor.std() with torch's default.",
    math.sqrt(5): "your half-width is 1.96 standard deviations of the tasks, not of their mean: divide by sqrt(T) "
                  "(the standard error of a mean of T values is s / sqrt(T)).",
    1 / math.sqrt(5): "you divided by T; the standard error of the mean divides the standard deviation by sqrt(T).",
    1 / 1.96: "your half-width is one standard error: a 95% interval is 1.96 standard errors on each side.",
    100.0: "you returned percentages: return fractions in [0, 1], as the accuracies come.",
}


def _diagnose_ci95(fn, gen: torch.Generator) -> str | None:
    accuracies = _task_accuracies(gen, 5)
    got = fn(accuracies.clone())
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return None
    mean, half = _ci95_reference(accuracies)
    if abs(float(got[0]) - 100 * mean) < 1e-3 * 100 * mean:
        return _CI_BUGS[100.0]
    ratio = float(got[1]) / half if half > 0 else float("nan")
    for want, message in _CI_BUGS.items():
        if abs(ratio - want) < 1e-3 * want:
            return message
    return None


register(Exercise(
    name="accuracy_ci95",
    reference=_ci95_reference,
    cases=[
        Case("600 tasks (the published protocol)", _accuracies_case(600)),
        Case("100 tasks", _accuracies_case(100)),
        Case("5 tasks: sample or population standard deviation?", _accuracies_case(5)),
        Case("2 tasks, the fewest with an interval", _accuracies_case(2)),
        Case("every task equally accurate: half-width 0", lambda gen: (torch.full((50,), 0.8),)),
        Case("one task: no interval", _accuracies_case(1), raises=ValueError),
    ],
    hints=[
        "The mean is accuracies.mean(). The half-width is 1.96 standard errors of that mean: the standard error of a "
        "mean of T values is their standard deviation divided by sqrt(T).",
        "Which standard deviation? The sample one, accuracies.std() (it divides by T - 1, torch's default); with one "
        "task it is undefined, so raise ValueError when T < 2.",
        "Return two Python floats: accuracies.mean().item() and 1.96 * accuracies.std().item() / math.sqrt(T).",
    ],
    rtol=1e-5, atol=1e-7,
    diagnose=_diagnose_ci95,
    library=(mean_ci95,),
))


def check_accuracy_ci95(fn):
    """fn(accuracies (T,) float32 in [0, 1], T >= 2) -> (mean, half_width), two floats: the mean and
    1.96 * sample std / sqrt(T). Raises ValueError for T < 2."""
    return check("accuracy_ci95", fn)


# ---------------------------------------------------------------- self_check_06

check_self_check_06 = self_check("self_check_06", {
    1: Number(lambda: 100 * 1.96 * 0.05 / math.sqrt(600),
              why="1.96 x 0.05 / sqrt(600) = 0.004, that is 0.4 points. The half-width shrinks as 1 / sqrt(T): four "
                  "times the tasks for half the width.",
              hint="the half-width is 1.96 standard errors, and the standard error is the standard deviation over "
                   "sqrt(T); answer in percentage points (x 100)."),
    2: Choice("b", why="Conv-4's BatchNorm always normalises with the statistics of the batch it is given, and MAML "
                       "runs a task's query set as one batch: a query's prediction depends on the other queries. That "
                       "is transductive evaluation, as in MAML's own code; Nichol et al. (2018) showed that it changes "
                       "the scores, so compare only numbers measured the same way.",
              wrong={"a": "Conv-4 here keeps no running averages (BatchStatNorm2d has none): there are none to use.",
                     "c": "MAML runs the support set and the query set through the network separately, each as its "
                          "own batch."}),
    3: Choice("c", why="a good embedding does the work: with the squared Euclidean distance, ProtoNet is a linear "
                       "classifier on the features whose weights are set by the class means (Snell et al. 2017, "
                       "section 2), so it needs no inner loop and no second-order gradients, and it matches MAML's "
                       "published accuracy on Omniglot.",
              wrong={"a": "ProtoNet changes no parameters at test time; it only averages embeddings.",
                     "b": "here both methods train on the same 1,200 characters with their rotations; ProtoNet sees "
                          "no more data."}),
    4: Choice("b", why="Raghu et al. (ICLR 2020) found that MAML's inner loop barely changes the body's "
                       "representations and that adapting the head alone (ANIL) scores about as well as MAML: its "
                       "success is mostly feature reuse, not rapid learning. Section 6 measures how far that holds for "
                       "this notebook's model.",
              wrong={"a": "ANIL, whose inner loop never changes the body, scored about as well as MAML: the body's "
                          "adaptation was not what MAML relied on in their experiments.",
                     "c": "ANIL's inner loop never changes the body, so it needs no gradient through the body's "
                          "adaptation: it is cheaper than MAML, not costlier."}),
}, hints=[
    "Question 1 is accuracy_ci95's formula with s = 0.05 and T = 600. Question 2 is answered in sections 2 and 5, "
    "question 3 in section 4, question 4 in section 6.",
    "For 2, recall how BatchStatNorm2d normalises and which drawings share a batch when MAML scores a query set; "
    "for 4, look at section 6's table: which layer's features change most with adaptation?",
])
