"""Exercises of notebook 01, part 1: the contrastive loss (its second part, the autopsy, is in autopsy.py).

Each exercise compares the learner's function with an independent reference, the library's
(`course_lib.contrastive.losses`, `course_lib.meta.core`) wherever it has the same function, on fresh
random inputs and edge cases. Where one kind of mistake is common, a `compare` or `diagnose` function
names it (a missing 1/t, the diagonal left in, a cache, a sign): those compute the wrong variants on
purpose, to recognise them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_lib.checks.compare import compare_outputs
from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.quiz import Choice, Number, self_check
from course_lib.contrastive import losses
from course_lib.kernels.nt_xent import nt_xent_fused


def random_rows(gen: torch.Generator, rows: int, dim: int, scale: float = 1.0) -> torch.Tensor:
    """(rows, dim) float32 standard normal numbers times `scale`."""
    return torch.randn(rows, dim, generator=gen) * scale


def view_pairs(gen: torch.Generator, n: int, dim: int, noise: float) -> torch.Tensor:
    """(2N, D): rows i and i + N are two noisy views of one random point, as a good encoder gives."""
    base = random_rows(gen, n, dim)
    return torch.cat([base + noise * random_rows(gen, n, dim), base + noise * random_rows(gen, n, dim)])


def _sims(gen: torch.Generator, rows: int, dim: int) -> torch.Tensor:
    zn = F.normalize(random_rows(gen, rows, dim), dim=1)
    return zn @ zn.T  # (2N, 2N) cosine similarities


def _loss_from_similarities(sim: torch.Tensor, temperature: float, targets: torch.Tensor | None = None) -> torch.Tensor:
    """NT-Xent from a (2N, 2N) similarity matrix (`losses.nt_xent_reference` after its zn @ zn.T): the
    diagonal masked, row i's target positive_index(2N)[i], or `targets` (2N,) to build a wrong variant."""
    rows = sim.shape[0]
    logits = (sim / temperature).masked_fill(torch.eye(rows, dtype=torch.bool), float("-inf"))  # (2N, 2N)
    return F.cross_entropy(logits, losses.positive_index(rows) if targets is None else targets)


def _similarity_gradient_reference(sim: torch.Tensor, temperature: float) -> torch.Tensor:
    """dL/dsim by autograd: the answer the learner derives by hand."""
    sim = sim.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(_loss_from_similarities(sim, temperature), sim)
    return grad


def close(a, b, rtol: float = 1e-3) -> bool:
    """Whether two numbers or tensors agree loosely: how a diagnosis recognises a known wrong variant."""
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=1e-6))


def _proportional(got, want, rtol: float, atol: float) -> str | None:
    """Default comparison; when the values are off by one factor everywhere, say which factor."""
    problem = compare_outputs(got, want, rtol, atol)
    if problem is None or not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return problem
    g, w = got.detach().double(), want.detach().double()
    if (g.diagonal() != 0).any():
        return problem + " The diagonal must be exactly 0: s(i, i) is masked out of the loss, so it gets no gradient."
    ratio = (g * w).sum() / (w * w).sum()
    if torch.allclose(g, ratio * w, rtol=1e-3, atol=1e-6):
        return problem + (f" Your matrix is the right one times {ratio.item():.4g}: check the factors 1/t "
                          "(the logits are s / t) and 1/(2N) (the loss is a mean over 2N rows), and the sign.")
    return problem


def _diagnose_nt_xent(fn, gen) -> str | None:
    z, t = random_rows(gen, 8, 5), 0.5
    got = fn(z.clone(), t)
    zn = F.normalize(z, dim=1)
    rows = len(z)
    # The three classic wrong losses, built on purpose to recognise them.
    no_mask = F.cross_entropy(zn @ zn.T / t, losses.positive_index(rows))
    adjacent = _loss_from_similarities(zn @ zn.T, t, targets=torch.arange(rows) ^ 1)
    unnormalised = _loss_from_similarities(z @ z.T, t)
    if close(got, no_mask):
        return "Your loss keeps the diagonal: row i is compared with itself. Mask s(i, i) with -inf before the softmax."
    if close(got, adjacent):
        return "Your targets pair rows 2k and 2k + 1; here the two views of image i are rows i and i + N."
    if close(got, unnormalised):
        return "Your loss uses raw dot products: L2-normalise the rows first (cosine similarity)."
    return None


def _diagnose_uniformity(fn, gen) -> str | None:
    x = random_rows(gen, 10, 3)
    xn = F.normalize(x, dim=1)
    with_self = (-2.0 * torch.cdist(xn, xn).pow(2)).exp().mean().log()  # the N self-pairs at distance 0 included
    if close(fn(x.clone()), with_self):
        return ("Your mean includes each point's distance to itself (0, so exp(0) = 1 each time): "
                "average over distinct pairs i != j only.")
    return None


for _exercise in [
    Exercise("softmax_cross_entropy", F.cross_entropy, [
        Case("6 examples, 5 classes, with gradient", lambda g: (random_rows(g, 6, 5), torch.randint(5, (6,), generator=g)), grad=True),
        Case("one example, 2 classes", lambda g: (random_rows(g, 1, 2), torch.randint(2, (1,), generator=g)), grad=True),
        Case("huge logits (around 1e4): a plain exp overflows to inf", lambda g: (random_rows(g, 4, 3, 1e4), torch.randint(3, (4,), generator=g)), grad=True),
        Case("masked logits (-inf) away from the target",
             lambda g: (random_rows(g, 4, 6).index_fill(1, torch.tensor([5]), float("-inf")), torch.randint(5, (4,), generator=g)), grad=True),
    ], [
        "For one row: loss = logsumexp(logits) - logits[target], where logsumexp(l) = log(sum_j exp(l_j)). Return the mean over the B rows.",
        "exp(1e4) is inf in float32. Subtract each row's maximum m first: logsumexp(l) = m + log(sum_j exp(l_j - m)); now every exp is at most 1.",
        "logits.gather(1, targets[:, None]).squeeze(1) picks each row's target logit; compare your logsumexp with torch.logsumexp(logits, dim=1).",
    ]),
    Exercise("nt_xent", losses.nt_xent_reference, [
        Case("2N=8 views, D=16, t=0.5, value and gradient", lambda g: (random_rows(g, 8, 16), 0.5), grad=True),
        Case("2N=2 (one pair: the positive is the only other row), D=3", lambda g: (random_rows(g, 2, 3), 0.5), grad=True),
        Case("2N=6, unnormalised rows (scale 50), D=129", lambda g: (random_rows(g, 6, 129, 50.0), 0.2), grad=True),
        Case("temperature 0.01 (logits up to 100): must stay finite", lambda g: (view_pairs(g, 5, 8, 0.3), 0.01), grad=True),
        Case("an odd number of rows (7): must raise ValueError", lambda g: (random_rows(g, 7, 4), 0.5), raises=ValueError),
    ], [
        "Normalise the rows (F.normalize(z, dim=1)), form the (2N, 2N) matrix of cosine similarities zn @ zn.T, divide by the temperature.",
        "Row i must not pick itself: masked_fill the diagonal with -inf. Its target is (i + N) % 2N. Then it is a cross-entropy over each row.",
        "F.cross_entropy(logits, targets) is the stable softmax cross-entropy. Check z.shape[0] % 2 first and raise ValueError with the shape.",
    ], diagnose=_diagnose_nt_xent, library=(losses.nt_xent, nt_xent_fused)),
    Exercise("similarity_gradient", _similarity_gradient_reference, [
        Case("2N=8, t=0.5", lambda g: (_sims(g, 8, 5), 0.5)),
        Case("2N=2, t=0.1", lambda g: (_sims(g, 2, 3), 0.1)),
        Case("2N=6, t=0.05 (a peaked softmax)", lambda g: (_sims(g, 6, 4), 0.05)),
    ], [
        "Row i's loss is the cross-entropy of the logits s(i, :) / t; the derivative of a cross-entropy w.r.t. its logits is softmax - one_hot(target).",
        "Chain rule: logits = s / t adds a factor 1/t; the loss is the mean over 2N rows, a factor 1/(2N). The masked diagonal gets 0.",
        "p = (sim / t).masked_fill(eye, -inf).softmax(dim=1); subtract 1 at (i, (i + N) % 2N); divide by t * 2N.",
    ], atol=1e-6, compare=lambda got, want: _proportional(got, want, 1e-4, 1e-6)),
    Exercise("info_nce_bound", lambda a, p, t: math.log(len(a)) - losses.info_nce(a, p, t), [
        Case("N=16 pairs, D=8, t=0.1, value and gradient", lambda g: (random_rows(g, 16, 8), random_rows(g, 16, 8), 0.1), grad=True),
        Case("near-identical pairs, t=0.05: the estimate approaches log N",
             lambda g: tuple(view_pairs(g, 12, 6, 0.01).split(12)) + (0.05,), grad=True),
        Case("N=1: one candidate, the estimate is log 1 - 0 = 0", lambda g: (random_rows(g, 1, 4), random_rows(g, 1, 4), 0.1)),
        Case("mismatched pairs (4 anchors, 5 positives): must raise ValueError", lambda g: (random_rows(g, 4, 3), random_rows(g, 5, 3), 0.1),
             raises=ValueError),
    ], [
        "InfoNCE is a cross-entropy: anchor i must pick positive i among all N positives. The estimate is log(N) - loss.",
        "logits = normalize(anchors) @ normalize(positives).T / t is (N, N); the targets are torch.arange(N).",
        "return math.log(N) - F.cross_entropy(logits, torch.arange(N)); raise ValueError when the two shapes differ.",
    ], library=(losses.info_nce,)),
    Exercise("alignment", losses.alignment, [
        Case("N=16 pairs, D=8, value and gradient", lambda g: (random_rows(g, 16, 8), random_rows(g, 16, 8)), grad=True),
        Case("unnormalised (scale 10), alpha=1", lambda g: (random_rows(g, 9, 5, 10.0), random_rows(g, 9, 5, 10.0), 1.0), grad=True),
        Case("mismatched pairs (4 vs 5 rows): must raise ValueError", lambda g: (random_rows(g, 4, 3), random_rows(g, 5, 3)), raises=ValueError),
    ], [
        "Alignment is the mean over pairs of ||f(x_i) - f(y_i)||^alpha, with f(x) the L2-normalised embedding.",
        "F.normalize both, subtract, take .norm(dim=1), raise to alpha, then .mean(). Check x.shape == y.shape first.",
    ]),
    Exercise("uniformity", losses.uniformity, [
        Case("N=16 points, D=3, value and gradient", lambda g: (random_rows(g, 16, 3),), grad=True),
        Case("N=2 points", lambda g: (random_rows(g, 2, 5),), grad=True),
        Case("N=32 points on the circle (D=2), t=1", lambda g: (random_rows(g, 32, 2), 1.0), grad=True),
    ], [
        "Uniformity is log of the mean, over distinct pairs i < j, of exp(-t ||f(x_i) - f(x_j)||^2), with f(x) L2-normalised.",
        "torch.pdist(xn) gives the distances of every distinct pair once; a point's distance to itself must not count.",
        "torch.logsumexp(-t * sq_dist, dim=0) - math.log(number of pairs) is the log of the mean, computed stably.",
    ], diagnose=_diagnose_uniformity),
]:
    register(_exercise)


def check_softmax_cross_entropy(fn): return check("softmax_cross_entropy", fn)
def check_nt_xent(fn): return check("nt_xent", fn)
def check_similarity_gradient(fn): return check("similarity_gradient", fn)
def check_info_nce_bound(fn): return check("info_nce_bound", fn)
def check_alignment(fn): return check("alignment", fn)
def check_uniformity(fn): return check("uniformity", fn)


check_self_check_01 = self_check("self_check_01", {
    1: Number(lambda: math.log(15), why="Equal similarities make the softmax uniform over the 2N - 1 = 15 candidates: "
              "-log(1/15) = log 15 = 2.71 nats, the loss of a guess.",
              hint="with every similarity equal, what probability does the softmax give the positive among the "
                   "2N - 1 candidates? The loss is -log of it."),
    2: Choice("b", why="A small t sharpens the softmax over the negatives, so the push (P_ik / t) goes to the few "
                       "most similar ones, the hard negatives.",
              wrong={"a": "that is what a large temperature does: the softmax flattens and every negative is pushed alike.",
                     "c": "t sits inside the softmax, not only in front of it: it changes how P_ik is shared (section 6)."}),
    3: Number(lambda: math.log(64), why="The estimate is log K - L with L >= 0: at most log 64 = 4.16 nats, however "
              "much information the views share.",
              hint="the estimate is log K minus a loss that is never negative."),
    4: Choice("b", why="logsumexp(l) = m + log sum exp(l - m) for any m; with m the largest logit every exponent "
                       "is <= 0, so nothing overflows, and the value and gradient are unchanged.",
              wrong={"a": "it adds work (a max and a subtraction); it is there for correctness, not speed.",
                     "c": "the shift is an identity: the value and the gradient are exactly the same, only computable."}),
    5: Choice("b", why="Identical embeddings: every positive pair is at distance 0 (perfect alignment), and every "
                       "pair of images too, so uniformity is log mean e^0 = 0, its largest (worst) value: collapse.",
              wrong={"a": "uniformity rewards spread; a single point has none.",
                     "c": "all views of an image coincide, so alignment is 0, its best value."}),
}, hints=[
    "Each question matches a section: 1 and 3 the InfoNCE reading (sections 2 and 7), 2 the temperature "
    "(section 6), 4 the stable form (sections 1 and 5), 5 alignment and uniformity (section 8).",
    "For 1: the softmax of 15 equal logits. For 3: the loss is a cross-entropy, never negative.",
])

__all__ = ["check_softmax_cross_entropy", "check_nt_xent", "check_similarity_gradient", "check_info_nce_bound",
           "check_alignment", "check_uniformity", "check_self_check_01"]
