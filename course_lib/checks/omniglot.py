"""Exercises of notebook 06 (MAML on Omniglot, against ProtoNet): draw an episode, ProtoNet's logits, the 95%
interval of an accuracy over test tasks, and the notebook's self-check, self_check_06.

The references are the library's own functions: `course_lib.data.sample_episodes` (one task of it; the
learner's draws differ from the library's, so an episode is checked by what it must hold, not value by
value), `course_lib.meta.protonet.protonet_logits` and `course_lib.meta.train.mean_ci95`.
"""

from __future__ import annotations

import math

import torch

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.quiz import Choice, Number, self_check
from course_lib.data import sample_episodes
from course_lib.meta.protonet import protonet_logits
from course_lib.meta.train import mean_ci95

__all__ = ["check_sample_episode", "check_protonet_logits", "check_accuracy_ci95", "check_self_check_06"]

# ---------------------------------------------------------------- sample_episode
# The learner writes fn(images (C, D, *shape), n_way, k_shot, n_query, generator) -> (x_s, y_s, x_q, y_q).
# Its random draws need not be the library's, so each case's images carry their identity: every pixel of
# drawing d of character c holds the number c * _STRIDE + d. The check decodes which drawings an episode
# holds and asks what any correct sampler gives: N distinct characters, one per label, K + Q distinct drawings
# each, labels grouped 0..N-1, the same episode from the same seed and another from another seed.

_PARTS = ("x_support", "y_support", "x_query", "y_query")
_STRIDE = 1000  # more than any case's drawings per character: id // _STRIDE is the character


def _labelled_images(n_chars: int, n_drawings: int, side: int) -> torch.Tensor:
    """(C, D, 1, side, side) float32 images whose every pixel holds the drawing's id c * _STRIDE + d."""
    ids = _STRIDE * torch.arange(n_chars)[:, None] + torch.arange(n_drawings)  # (C, D)
    return ids.float().view(n_chars, n_drawings, 1, 1, 1).expand(n_chars, n_drawings, 1, side, side).clone()


def _episodes_of(sampler):
    """Run `sampler` as the check does: twice with one seed, once with another (when the images offer
    enough different episodes that two seeds surely differ). Returns (first, again, other or None)."""
    def run(images, n_way, k_shot, n_query, seed):
        def draw(s):
            return sampler(images, n_way, k_shot, n_query, torch.Generator().manual_seed(s))
        other = draw(seed + 1) if images.shape[0] >= 10 else None
        return draw(seed), draw(seed), other
    return run


def _library_episode(images, n_way, k_shot, n_query, generator):
    """One task of the library's sampler: its tensors without the task dimension."""
    return tuple(t[0] for t in sample_episodes(images, n_way, k_shot, n_query, 1, generator=generator))


def _decode(x: torch.Tensor, name: str) -> tuple[torch.Tensor | None, str | None]:
    """(ids (rows,), None) of the drawings in x (rows, 1, H, W), or (None, what is wrong)."""
    flat = x.detach().flatten(1).double()
    ids = flat[:, 0]
    whole = (flat == ids[:, None]).all(1) & (ids == ids.round()) & (ids >= 0)
    if not bool(whole.all()):
        row = int((~whole).nonzero()[0])
        return None, (f"{name}[{row}] is not one of the drawings of `images`: each row must be a whole drawing, "
                      "copied unchanged (index images[character, drawing]).")
    return ids.long(), None


def _episode_problem(got, want) -> str | None:
    """What is wrong with the learner's episode `got`, compared with the library's `want`, or None."""
    if not isinstance(got, (tuple, list)) or len(got) != 4:
        count = len(got) if isinstance(got, (tuple, list)) else 1
        return f"returned {count} value(s); expected 4: (x_support, y_support, x_query, y_query)."
    for name, g, w in zip(_PARTS, got, want):
        if not isinstance(g, torch.Tensor):
            return f"{name} is a {type(g).__name__}, expected a torch.Tensor."
        if g.shape != w.shape or g.dtype != w.dtype:
            return f"{name} is {g.dtype} {tuple(g.shape)}, expected {w.dtype} {tuple(w.shape)}."
    for name, g, w in zip(_PARTS[1::2], got[1::2], want[1::2]):
        if not torch.equal(g, w):
            return (f"{name} is {g.tolist()[:12]}..., expected {w.tolist()[:12]}...: labels 0..N-1, rows grouped "
                    "by label ([0]*K + [1]*K + ... for the support, the same with Q for the query).")
    n_way = int(want[1].max()) + 1
    support, problem = _decode(got[0], "x_support")
    if problem:
        return problem
    query, problem = _decode(got[2], "x_query")
    if problem:
        return problem
    per_class = torch.cat([support.view(n_way, -1), query.view(n_way, -1)], dim=1)  # (N, K+Q) drawing ids
    chars = per_class // _STRIDE
    mixed = (chars != chars[:, :1]).any(1)
    if bool(mixed.any()):
        c = int(mixed.nonzero()[0])
        return (f"label {c} holds drawings of characters {sorted(set(chars[c].tolist()))}: every drawing of a "
                "class, support and query, must be of the same character.")
    if len(set(chars[:, 0].tolist())) < n_way:
        return "two labels share a character: draw N distinct characters (torch.randperm gives distinct indices)."
    for c in range(n_way):
        if len(set(per_class[c].tolist())) < per_class.shape[1]:
            return (f"label {c} uses one drawing twice (support and query, or twice in one set): draw K + Q distinct "
                    "drawings per character, then split them into K support and Q query drawings.")
    return None


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _compare_episodes(got, want) -> str | None:
    """The learner's (first, again, other) episodes against the library's (see `_episodes_of`)."""
    first, again, other = got
    problem = _episode_problem(first, want[0])
    if problem:
        return problem
    if not _same(first, again):
        return ("two calls with generators seeded alike gave different episodes: take every random number from "
                "`generator` (torch.randperm(n, generator=generator)), none from torch's global generator.")
    if other is not None and _same(first, other):
        return "generators with different seeds gave the same episode: the draws must use `generator`."
    return None


def _episode_case(n_chars: int, n_drawings: int, side: int, n_way: int, k_shot: int, n_query: int):
    def make(gen: torch.Generator) -> tuple:
        seed = int(torch.randint(2**31 - 2, (1,), generator=gen))
        return _labelled_images(n_chars, n_drawings, side), n_way, k_shot, n_query, seed
    return make


register(Exercise(
    name="sample_episode",
    reference=_episodes_of(_library_episode),
    cases=[
        Case("5-way 1-shot, 15 queries, 30 characters of 20 drawings (1x28x28)", _episode_case(30, 20, 28, 5, 1, 15)),
        Case("5-way 5-shot, 5 queries", _episode_case(40, 20, 4, 5, 5, 5)),
        Case("20-way 1-shot, 19 queries: every drawing of 20 of 25 characters", _episode_case(25, 20, 4, 20, 1, 19)),
        Case("every character: 6-way 2-shot, 3 queries, 6 characters of 5 drawings", _episode_case(6, 5, 4, 6, 2, 3)),
        Case("more ways than characters", _episode_case(4, 20, 4, 5, 1, 1), raises=ValueError),
        Case("more shots + queries than drawings", _episode_case(30, 20, 4, 5, 5, 16), raises=ValueError),
    ],
    hints=[
        "Two draws from `generator`: which N characters (torch.randperm(C, generator=generator)[:n_way]) and, for "
        "each of them, which K + Q of its D drawings (one more randperm per character). Distinct drawings per "
        "character, so that a support drawing is never also a query drawing.",
        "images[chars[:, None], picks], with chars (N,) and picks (N, K+Q), is (N, K+Q, 1, 28, 28): row c holds "
        "class c. Its first K columns are the support, the rest the query; the labels are "
        "torch.arange(n_way)[:, None].expand(n_way, k_shot + n_query).",
        "reshape (N, K, 1, 28, 28) to (N*K, 1, 28, 28) and the labels (N, K) to (N*K,), which keeps the rows grouped "
        "by class; before drawing, raise ValueError when n_way > C or k_shot + n_query > D.",
    ],
    compare=_compare_episodes,
))


def check_sample_episode(fn):
    """fn(images (C, D, 1, 28, 28), n_way, k_shot, n_query, generator) -> x_support (N*K, 1, 28, 28),
    y_support (N*K,) int64, x_query (N*Q, 1, 28, 28), y_query (N*Q,) int64: one N-way K-shot episode."""
    return check("sample_episode", _episodes_of(fn) if callable(fn) else fn)


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
