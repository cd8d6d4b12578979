"""Exercises of notebooks 00 (warm-up) and 01 (the contrastive loss, and the "find the bugs" fixes).

Each exercise compares the learner's function with the library on fresh random inputs and edge
cases; the worked solutions are in `contrastive_solutions.py`. Where one kind of mistake is common,
a `compare` or `diagnose` function names it (a missing 1/t, the diagonal left in, a cache, a sign).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.contrastive import losses
from course_lib.checks import contrastive_solutions as sol
from course_lib.checks.framework import Case, Exercise, check, compare_outputs, register


def _z(gen: torch.Generator, rows: int, dim: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(rows, dim, generator=gen) * scale  # (rows, dim) float32


def _pairs(gen: torch.Generator, n: int, dim: int, noise: float) -> torch.Tensor:
    """(2N, D): rows i and i + N are two noisy views of one random point, as a good encoder gives."""
    base = _z(gen, n, dim)
    return torch.cat([base + noise * _z(gen, n, dim), base + noise * _z(gen, n, dim)])


def _sims(gen: torch.Generator, rows: int, dim: int) -> torch.Tensor:
    zn = F.normalize(_z(gen, rows, dim), dim=1)
    return zn @ zn.T  # (2N, 2N) cosine similarities


def _loss_from_similarities(sim: torch.Tensor, temperature: float) -> torch.Tensor:
    rows = sim.shape[0]
    logits = (sim / temperature).masked_fill(torch.eye(rows, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, losses.positive_index(rows))


def _similarity_gradient_reference(sim: torch.Tensor, temperature: float) -> torch.Tensor:
    """dL/dsim by autograd: the answer the learner derives by hand."""
    sim = sim.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(_loss_from_similarities(sim, temperature), sim)
    return grad


def _close(a, b, rtol: float = 1e-3) -> bool:
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
    z, t = _z(gen, 8, 5), 0.5
    got = fn(z.clone(), t)
    zn = F.normalize(z, dim=1)
    rows = len(z)
    logits = zn @ zn.T / t
    no_mask = F.cross_entropy(logits, losses.positive_index(rows))
    adjacent = F.cross_entropy(logits.masked_fill(torch.eye(rows, dtype=torch.bool), float("-inf")),
                               torch.arange(rows) ^ 1)
    raw = z @ z.T / t
    unnormalised = F.cross_entropy(raw.masked_fill(torch.eye(rows, dtype=torch.bool), float("-inf")),
                                   losses.positive_index(rows))
    if _close(got, no_mask):
        return "Your loss keeps the diagonal: row i is compared with itself. Mask s(i, i) with -inf before the softmax."
    if _close(got, adjacent):
        return "Your targets pair rows 2k and 2k + 1; here the two views of image i are rows i and i + N."
    if _close(got, unnormalised):
        return "Your loss uses raw dot products: L2-normalise the rows first (cosine similarity)."
    return None


def _diagnose_pairs(fn, gen) -> str | None:
    z = _pairs(gen, 4, 6, noise=0.05)
    got, want = float(fn(z.clone(), 0.5)), float(losses.nt_xent_reference(z, 0.5))
    if got > want + 0.5:
        return (f"On a batch where rows i and i + N are near copies (a perfect encoder) your loss is {got:.3g}, "
                f"but it should be low ({want:.3g}): the targets must point row i at row i + N (mod 2N).")
    return None


def _diagnose_similarity(fn, gen) -> str | None:
    z = _z(gen, 6, 4)
    shape = tuple(fn(z.clone()).shape)
    if shape in ((6, 1), (1, 6), (6,)):
        return (f"For 2N = 6 rows you return shape {shape}: both operands were expanded along the same axis, so "
                "each row is only compared with itself. Broadcast (2N, 1, D) against (1, 2N, D) to form every (i, j).")
    if shape == (6, 6, 4):
        return "A (2N, 2N, D) result still holds the products per dimension: reduce over the last axis."
    return None


def _diagnose_cache(fn, gen) -> str | None:
    za, zb = _z(gen, 8, 5), _z(gen, 8, 5)
    ga, gb = fn(za, 0.5), fn(zb.requires_grad_(True), 0.5)
    if _close(ga, gb) and not _close(losses.nt_xent_reference(za, 0.5), losses.nt_xent_reference(zb.detach(), 0.5)):
        return (f"Your function returned the same loss ({float(ga.detach()):.5g}) for two different batches: something "
                "computed from an earlier batch (the logits?) is kept and reused. Compute everything from the z "
                "passed in, on every call.")
    if isinstance(gb, torch.Tensor) and not gb.requires_grad:
        return "The loss does not depend on this call's z: the encoder would get no gradient from this batch."
    return None


def _diagnose_uniformity(fn, gen) -> str | None:
    x = _z(gen, 10, 3)
    xn = F.normalize(x, dim=1)
    with_self = (-2.0 * torch.cdist(xn, xn).pow(2)).exp().mean().log()  # the N self-pairs at distance 0 included
    if _close(fn(x.clone()), with_self):
        return ("Your mean includes each point's distance to itself (0, so exp(0) = 1 each time): "
                "average over distinct pairs i != j only.")
    return None


def _diagnose_meta(fn, gen) -> str | None:
    args = _regression_task(gen, dim=3, k_support=5, k_query=10) + (0.1, 0.05)
    w = args[0]
    got, want = fn(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args]), sol.fixed_meta_update(*args)
    if _close(got - w, -(want - w)):
        return ("Your update moves w by +meta_lr * gradient: that is gradient ascent, which makes the query loss "
                "after adaptation larger. A descent step subtracts the gradient.")
    return None


def _regression_task(gen, dim: int, k_support: int, k_query: int) -> tuple:
    """(w, x_support, y_support, x_query, y_query): a random linear task y = x @ w_true + noise."""
    w_true = torch.randn(dim, generator=gen)
    x_s, x_q = torch.randn(k_support, dim, generator=gen), torch.randn(k_query, dim, generator=gen)
    y_s = x_s @ w_true + 0.1 * torch.randn(k_support, generator=gen)
    y_q = x_q @ w_true + 0.1 * torch.randn(k_query, generator=gen)
    return torch.randn(dim, generator=gen), x_s, y_s, x_q, y_q


class _Build:
    """The learner's network class, called as (in_channels, image_size, n_classes, x) -> (B, n_classes) logits."""

    def __init__(self, build):
        self.build = build

    def __call__(self, in_channels, image_size, n_classes, x):
        return self.build(in_channels, image_size, n_classes)(x)


def _compare_logits_shape(got, want) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"the network returned a {type(got).__name__}, expected a tensor of shape {tuple(want.shape)}."
    if got.shape != want.shape:
        return f"the network's output has shape {tuple(got.shape)}, expected (batch, n_classes) = {tuple(want.shape)}."
    if not torch.isfinite(got).all():
        return "the network's output contains NaN or inf."
    return None


def _diagnose_flatten(build, gen) -> str | None:
    net, seen = build(1, 28, 5), {}
    first = next((m for m in net.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        return None

    def record(module, inputs):  # returns None: the inputs go on unchanged
        seen.setdefault("shape", tuple(inputs[0].shape))

    first.register_forward_pre_hook(record)
    try:
        net(torch.randn(2, 1, 28, 28, generator=gen))
    except RuntimeError:
        pass
    if "shape" in seen and seen["shape"][-1] != first.in_features:
        return (f"For a 1x28x28 image your first Linear layer expects in_features={first.in_features}, but the "
                f"flattened feature map has {seen['shape'][-1]} values per image: print the shape after each "
                "layer and size the Linear layer from the shape that really arrives.")
    return None


EXERCISES = [
    Exercise("l2_normalize", lambda x: F.normalize(x, dim=1), [
        Case("8 rows of 4 numbers, with gradient", lambda g: (_z(g, 8, 4),), grad=True),
        Case("rows of very different lengths (1e-3 to 1e3)", lambda g: (_z(g, 7, 3) * torch.logspace(-3, 3, 7)[:, None],)),
        Case("a row of zeros (must stay 0, not become NaN)", lambda g: (torch.cat([torch.zeros(1, 4), _z(g, 3, 4)]),)),
    ], [
        "Divide each row by its length: x.norm(dim=1, keepdim=True) is the (N, 1) column of row norms, which broadcasts over D.",
        "A row of zeros has norm 0, and 0 / 0 is NaN. Divide by norms.clamp_min(1e-12) instead.",
        "return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)   (the same as F.normalize(x, dim=1)).",
    ], solution=sol.l2_normalize),
    Exercise("softmax_cross_entropy", F.cross_entropy, [
        Case("6 examples, 5 classes, with gradient", lambda g: (_z(g, 6, 5), torch.randint(5, (6,), generator=g)), grad=True),
        Case("one example, 2 classes", lambda g: (_z(g, 1, 2), torch.randint(2, (1,), generator=g)), grad=True),
        Case("huge logits (around 1e4): a plain exp overflows to inf", lambda g: (_z(g, 4, 3, 1e4), torch.randint(3, (4,), generator=g)), grad=True),
        Case("masked logits (-inf) away from the target",
             lambda g: (_z(g, 4, 6).index_fill(1, torch.tensor([5]), float("-inf")), torch.randint(5, (4,), generator=g)), grad=True),
    ], [
        "For one row: loss = logsumexp(logits) - logits[target], where logsumexp(l) = log(sum_j exp(l_j)). Return the mean over the B rows.",
        "exp(1e4) is inf in float32. Subtract each row's maximum m first: logsumexp(l) = m + log(sum_j exp(l_j - m)); now every exp is at most 1.",
        "logits.gather(1, targets[:, None]).squeeze(1) picks each row's target logit; compare your logsumexp with torch.logsumexp(logits, dim=1).",
    ], solution=sol.softmax_cross_entropy),
    Exercise("nt_xent", losses.nt_xent_reference, [
        Case("2N=8 views, D=16, t=0.5, value and gradient", lambda g: (_z(g, 8, 16), 0.5), grad=True),
        Case("2N=2 (one pair: the positive is the only other row), D=3", lambda g: (_z(g, 2, 3), 0.5), grad=True),
        Case("2N=6, unnormalised rows (scale 50), D=129", lambda g: (_z(g, 6, 129, 50.0), 0.2), grad=True),
        Case("temperature 0.01 (logits up to 100): must stay finite", lambda g: (_pairs(g, 5, 8, 0.3), 0.01), grad=True),
        Case("an odd number of rows (7): must raise ValueError", lambda g: (_z(g, 7, 4), 0.5), raises=ValueError),
    ], [
        "Normalise the rows (F.normalize(z, dim=1)), form the (2N, 2N) matrix of cosine similarities zn @ zn.T, divide by the temperature.",
        "Row i must not pick itself: masked_fill the diagonal with -inf. Its target is (i + N) % 2N. Then it is a cross-entropy over each row.",
        "F.cross_entropy(logits, targets) is the stable softmax cross-entropy. Check z.shape[0] % 2 first and raise ValueError with the shape.",
    ], solution=sol.nt_xent, diagnose=_diagnose_nt_xent),
    Exercise("similarity_gradient", _similarity_gradient_reference, [
        Case("2N=8, t=0.5", lambda g: (_sims(g, 8, 5), 0.5)),
        Case("2N=2, t=0.1", lambda g: (_sims(g, 2, 3), 0.1)),
        Case("2N=6, t=0.05 (a peaked softmax)", lambda g: (_sims(g, 6, 4), 0.05)),
    ], [
        "Row i's loss is the cross-entropy of the logits s(i, :) / t; the derivative of a cross-entropy w.r.t. its logits is softmax - one_hot(target).",
        "Chain rule: logits = s / t adds a factor 1/t; the loss is the mean over 2N rows, a factor 1/(2N). The masked diagonal gets 0.",
        "p = (sim / t).masked_fill(eye, -inf).softmax(dim=1); subtract 1 at (i, (i + N) % 2N); divide by t * 2N.",
    ], atol=1e-6, solution=sol.similarity_gradient, compare=lambda got, want: _proportional(got, want, 1e-4, 1e-6)),
    Exercise("info_nce_bound", lambda a, p, t: math.log(len(a)) - losses.info_nce(a, p, t), [
        Case("N=16 pairs, D=8, t=0.1, value and gradient", lambda g: (_z(g, 16, 8), _z(g, 16, 8), 0.1), grad=True),
        Case("near-identical pairs, t=0.05: the estimate approaches log N",
             lambda g: tuple(_pairs(g, 12, 6, 0.01).split(12)) + (0.05,), grad=True),
        Case("N=1: one candidate, the estimate is log 1 - 0 = 0", lambda g: (_z(g, 1, 4), _z(g, 1, 4), 0.1)),
        Case("mismatched pairs (4 anchors, 5 positives): must raise ValueError", lambda g: (_z(g, 4, 3), _z(g, 5, 3), 0.1),
             raises=ValueError),
    ], [
        "InfoNCE is a cross-entropy: anchor i must pick positive i among all N positives. The estimate is log(N) - loss.",
        "logits = normalize(anchors) @ normalize(positives).T / t is (N, N); the targets are torch.arange(N).",
        "return math.log(N) - F.cross_entropy(logits, torch.arange(N)); raise ValueError when the two shapes differ.",
    ], solution=sol.info_nce_bound),
    Exercise("alignment", losses.alignment, [
        Case("N=16 pairs, D=8, value and gradient", lambda g: (_z(g, 16, 8), _z(g, 16, 8)), grad=True),
        Case("unnormalised (scale 10), alpha=1", lambda g: (_z(g, 9, 5, 10.0), _z(g, 9, 5, 10.0), 1.0), grad=True),
        Case("mismatched pairs (4 vs 5 rows): must raise ValueError", lambda g: (_z(g, 4, 3), _z(g, 5, 3)), raises=ValueError),
    ], [
        "Alignment is the mean over pairs of ||f(x_i) - f(y_i)||^alpha, with f(x) the L2-normalised embedding.",
        "F.normalize both, subtract, take .norm(dim=1), raise to alpha, then .mean(). Check x.shape == y.shape first.",
    ], solution=sol.alignment),
    Exercise("uniformity", losses.uniformity, [
        Case("N=16 points, D=3, value and gradient", lambda g: (_z(g, 16, 3),), grad=True),
        Case("N=2 points", lambda g: (_z(g, 2, 5),), grad=True),
        Case("N=32 points on the circle (D=2), t=1", lambda g: (_z(g, 32, 2), 1.0), grad=True),
    ], [
        "Uniformity is log of the mean, over distinct pairs i < j, of exp(-t ||f(x_i) - f(x_j)||^2), with f(x) L2-normalised.",
        "torch.pdist(xn) gives the distances of every distinct pair once; a point's distance to itself must not count.",
        "torch.logsumexp(-t * sq_dist, dim=0) - math.log(number of pairs) is the log of the mean, computed stably.",
    ], solution=sol.uniformity, diagnose=_diagnose_uniformity),
    Exercise("fix_positive_pairs", losses.nt_xent_reference, [
        Case("2N=8 views whose rows i and i + N are near copies", lambda g: (_pairs(g, 4, 6, 0.05), 0.5), grad=True),
        Case("2N=2", lambda g: (_z(g, 2, 3), 0.5), grad=True),
        Case("2N=12, random", lambda g: (_z(g, 12, 5), 0.3), grad=True),
    ], [
        "Print the targets for 2N = 8 next to the rows that hold the two views of each image.",
        "z = torch.cat([z1, z2]) puts image i's views in rows i and i + N. The targets must be (i + N) % 2N, not i ^ 1.",
    ], solution=sol.fixed_positive_pairs, diagnose=_diagnose_pairs),
    Exercise("fix_similarity_shape", lambda z: F.normalize(z, dim=1) @ F.normalize(z, dim=1).T, [
        Case("2N=8, D=16, value and gradient", lambda g: (_z(g, 8, 16),), grad=True),
        Case("2N=2, D=1", lambda g: (_z(g, 2, 1),)),
        Case("2N=6, D=129, unnormalised (scale 20)", lambda g: (_z(g, 6, 129, 20.0),), grad=True),
    ], [
        "Print the shapes: what are zn.unsqueeze(1).shape and the shape of the result for 2N = 8?",
        "Broadcasting pairs (2N, 1, D) with (1, 2N, D) to (2N, 2N, D): the second operand needs unsqueeze(0), not unsqueeze(1).",
    ], solution=sol.fixed_similarity_matrix, diagnose=_diagnose_similarity),
    Exercise("fix_cached_logits", losses.nt_xent_reference, [
        Case("batch 1: 2N=8", lambda g: (_z(g, 8, 5), 0.5), grad=True),
        Case("batch 2: a different 2N=8", lambda g: (_z(g, 8, 5), 0.5), grad=True),
        Case("batch 3: the last, smaller batch, 2N=4", lambda g: (_z(g, 4, 5), 0.5), grad=True),
    ], [
        "Call the buggy loss on two different batches: what do you get the second time?",
        "The logits depend on z, so they must be computed from the z of this call, every call. Remove the cache.",
    ], solution=sol.fixed_cached_loss, diagnose=_diagnose_cache),
    Exercise("fix_meta_update", sol.fixed_meta_update, [
        Case("D=3, 5 support and 10 query points", lambda g: _regression_task(g, 3, 5, 10) + (0.1, 0.05)),
        Case("D=1, 1 support and 1 query point", lambda g: _regression_task(g, 1, 1, 1) + (0.5, 0.1)),
        Case("inner_lr=0 (no adaptation: plain multi-task learning)", lambda g: _regression_task(g, 4, 6, 6) + (0.0, 0.2)),
    ], [
        "Which way does w move when the query loss's gradient is positive? Which way should it move?",
        "Gradient descent: w_new = w - meta_lr * grad. The inner step already subtracts; the meta step must too.",
    ], solution=sol.fixed_meta_update, diagnose=_diagnose_meta),
    Exercise("fix_flatten_size", lambda c, s, k, x: sol.FixedNet(c, s, k)(x), [
        Case("1x28x28 images (Omniglot), 5 classes", lambda g: (1, 28, 5, torch.randn(4, 1, 28, 28, generator=g))),
        Case("3x32x32 images (CIFAR-10), 10 classes", lambda g: (3, 32, 10, torch.randn(2, 3, 32, 32, generator=g))),
        Case("1x30x30 images (pooling floors 15 to 7), 3 classes", lambda g: (1, 30, 3, torch.randn(3, 1, 30, 30, generator=g))),
    ], [
        "Follow one image through the network and write the shape after each layer: conv (padding 1) keeps the side, 2x2 max-pooling halves it.",
        "After two poolings a side S becomes S // 2 // 2, with 32 channels: the first Linear layer needs 32 * (S // 4) ** 2 inputs, computed from image_size.",
        "side = image_size // 2 // 2; self.head = nn.Linear(32 * side * side, n_classes).",
    ], solution=sol.FixedNet, compare=_compare_logits_shape, diagnose=lambda fn, g: _diagnose_flatten(fn.build, g)),
]
for _exercise in EXERCISES:
    register(_exercise)


def check_l2_normalize(fn): return check("l2_normalize", fn)
def check_softmax_cross_entropy(fn): return check("softmax_cross_entropy", fn)
def check_nt_xent(fn): return check("nt_xent", fn)
def check_similarity_gradient(fn): return check("similarity_gradient", fn)
def check_info_nce_bound(fn): return check("info_nce_bound", fn)
def check_alignment(fn): return check("alignment", fn)
def check_uniformity(fn): return check("uniformity", fn)
def check_fix_positive_pairs(fn): return check("fix_positive_pairs", fn)
def check_fix_similarity_shape(fn): return check("fix_similarity_shape", fn)
def check_fix_cached_logits(fn): return check("fix_cached_logits", fn)
def check_fix_meta_update(fn): return check("fix_meta_update", fn)


def check_fix_flatten_size(net_class):
    """`net_class(in_channels, image_size, n_classes)` builds the network; it is tried on three image sizes."""
    if not callable(net_class):
        return check("fix_flatten_size", net_class)
    return check("fix_flatten_size", _Build(net_class))


__all__ = [
    "check_l2_normalize", "check_softmax_cross_entropy", "check_nt_xent", "check_similarity_gradient",
    "check_info_nce_bound", "check_alignment", "check_uniformity", "check_fix_positive_pairs",
    "check_fix_similarity_shape", "check_fix_cached_logits", "check_fix_meta_update", "check_fix_flatten_size",
]
