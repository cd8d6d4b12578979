"""Exercises of notebook 01, part 2: find the bugs. Each gives the learner a broken function to fix.

The references are independent of the exercises' worked solutions: the library's NT-Xent, the library's
functional MAML (`course_lib.meta.core`) for the meta-update, and a network sized by measurement for the
flatten bug. Each exercise also has a diagnosis that recognises the bug it plants if it is still there.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.loss_math import close, random_rows, view_pairs
from course_lib.checks.maml import linear_meta_gradient_reference, linear_task
from course_lib.contrastive import losses


def _diagnose_pairs(fn, gen) -> str | None:
    z = view_pairs(gen, 4, 6, noise=0.05)
    got, want = float(fn(z.clone(), 0.5)), float(losses.nt_xent_reference(z, 0.5))
    if got > want + 0.5:
        return (f"On a batch where rows i and i + N are near copies (a perfect encoder) your loss is {got:.3g}, "
                f"but it should be low ({want:.3g}): the targets must point row i at row i + N (mod 2N).")
    return None


def _diagnose_similarity(fn, gen) -> str | None:
    z = random_rows(gen, 6, 4)
    shape = tuple(fn(z.clone()).shape)
    if shape in ((6, 1), (1, 6), (6,)):
        return (f"For 2N = 6 rows you return shape {shape}: both operands were expanded along the same axis, so "
                "each row is only compared with itself. Broadcast (2N, 1, D) against (1, 2N, D) to form every (i, j).")
    if shape == (6, 6, 4):
        return "A (2N, 2N, D) result still holds the products per dimension: reduce over the last axis."
    return None


def _diagnose_cache(fn, gen) -> str | None:
    za, zb = random_rows(gen, 8, 5), random_rows(gen, 8, 5)
    ga, gb = fn(za, 0.5), fn(zb.requires_grad_(True), 0.5)
    if close(ga, gb) and not close(losses.nt_xent_reference(za, 0.5), losses.nt_xent_reference(zb.detach(), 0.5)):
        return (f"Your function returned the same loss ({float(ga.detach()):.5g}) for two different batches: something "
                "computed from an earlier batch (the logits?) is kept and reused. Compute everything from the z "
                "passed in, on every call.")
    if isinstance(gb, torch.Tensor) and not gb.requires_grad:
        return "The loss does not depend on this call's z: the encoder would get no gradient from this batch."
    return None


def _meta_update_reference(w, x_support, y_support, x_query, y_query, inner_lr, meta_lr) -> torch.Tensor:
    """One MAML meta-step of a linear model y = x @ w, w (D,): the meta-gradient from the library's
    functional MAML (notebook 05's reference), then a descent step. Returns the new w (D,)."""
    return w.detach() - meta_lr * linear_meta_gradient_reference(w, x_support, y_support, x_query, y_query, inner_lr)


def _diagnose_meta(fn, gen) -> str | None:
    args = linear_task(gen, dim=3, k_support=5, k_query=10) + (0.1, 0.05)
    w = args[0]
    got, want = fn(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args]), _meta_update_reference(*args)
    if close(got - w, -(want - w)):
        return ("Your update moves w by +meta_lr * gradient: that is gradient ascent, which makes the query loss "
                "after adaptation larger. A descent step subtracts the gradient.")
    return None


def _reference_conv_net(in_channels: int, image_size: int, n_classes: int) -> nn.Module:
    """The reference of `fix_flatten_size`: (B, in_channels, S, S) -> (B, n_classes) logits, notebook 01's
    two conv + 2x2 max-pool blocks, then a Linear layer sized by passing one blank image through them
    (measured, so the reference does not repeat the arithmetic the exercise asks for)."""
    features = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    with torch.no_grad():
        flat = features(torch.zeros(1, in_channels, image_size, image_size)).shape[1]
    return nn.Sequential(features, nn.Linear(flat, n_classes))


def _run_net(net_class, in_channels: int, image_size: int, n_classes: int, x: torch.Tensor) -> torch.Tensor:
    """Build the learner's network and run it on x (B, in_channels, S, S): (B, n_classes) logits."""
    return net_class(in_channels, image_size, n_classes)(x)


def _compare_logits_shape(got, want) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"the network returned a {type(got).__name__}, expected a tensor of shape {tuple(want.shape)}."
    if got.shape != want.shape:
        return f"the network's output has shape {tuple(got.shape)}, expected (batch, n_classes) = {tuple(want.shape)}."
    if not torch.isfinite(got).all():
        return "the network's output contains NaN or inf."
    return None


def _diagnose_flatten(build, gen) -> str | None:
    net, arrived = build(1, 28, 5), []
    first = next((m for m in net.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        return None
    # A pre-hook that returns None passes the inputs on unchanged: it only records their width.
    first.register_forward_pre_hook(lambda module, inputs: arrived.append(inputs[0].shape[-1]))
    try:
        net(torch.randn(2, 1, 28, 28, generator=gen))
    except RuntimeError:
        pass
    if arrived and arrived[0] != first.in_features:
        return (f"For a 1x28x28 image your first Linear layer expects in_features={first.in_features}, but the "
                f"flattened feature map has {arrived[0]} values per image: print the shape after each "
                "layer and size the Linear layer from the shape that really arrives.")
    return None


for _exercise in [
    Exercise("fix_positive_pairs", losses.nt_xent_reference, [
        Case("2N=8 views whose rows i and i + N are near copies", lambda g: (view_pairs(g, 4, 6, 0.05), 0.5), grad=True),
        Case("2N=2", lambda g: (random_rows(g, 2, 3), 0.5), grad=True),
        Case("2N=12, random", lambda g: (random_rows(g, 12, 5), 0.3), grad=True),
    ], [
        "Print the targets for 2N = 8 next to the rows that hold the two views of each image.",
        "z = torch.cat([z1, z2]) puts image i's views in rows i and i + N. The targets must be (i + N) % 2N, not i ^ 1.",
    ], diagnose=_diagnose_pairs),
    Exercise("fix_similarity_shape", lambda z: F.normalize(z, dim=1) @ F.normalize(z, dim=1).T, [
        Case("2N=8, D=16, value and gradient", lambda g: (random_rows(g, 8, 16),), grad=True),
        Case("2N=2, D=1", lambda g: (random_rows(g, 2, 1),)),
        Case("2N=6, D=129, unnormalised (scale 20)", lambda g: (random_rows(g, 6, 129, 20.0),), grad=True),
    ], [
        "Print the shapes: what are zn.unsqueeze(1).shape and the shape of the result for 2N = 8?",
        "Broadcasting pairs (2N, 1, D) with (1, 2N, D) to (2N, 2N, D): the second operand needs unsqueeze(0), not unsqueeze(1).",
    ], diagnose=_diagnose_similarity),
    Exercise("fix_cached_logits", losses.nt_xent_reference, [
        Case("batch 1: 2N=8", lambda g: (random_rows(g, 8, 5), 0.5), grad=True),
        Case("batch 2: a different 2N=8", lambda g: (random_rows(g, 8, 5), 0.5), grad=True),
        Case("batch 3: the last, smaller batch, 2N=4", lambda g: (random_rows(g, 4, 5), 0.5), grad=True),
    ], [
        "Call the buggy loss on two different batches: what do you get the second time?",
        "The logits depend on z, so they must be computed from the z of this call, every call. Remove the cache.",
    ], diagnose=_diagnose_cache),
    Exercise("fix_meta_update", _meta_update_reference, [
        Case("D=3, 5 support and 10 query points", lambda g: linear_task(g, 3, 5, 10) + (0.1, 0.05)),
        Case("D=1, 1 support and 1 query point", lambda g: linear_task(g, 1, 1, 1) + (0.5, 0.1)),
        Case("inner_lr=0 (no adaptation: plain multi-task learning)", lambda g: linear_task(g, 4, 6, 6) + (0.0, 0.2)),
    ], [
        "Which way does w move when the query loss's gradient is positive? Which way should it move?",
        "Gradient descent: w_new = w - meta_lr * grad. The inner step already subtracts; the meta step must too.",
    ], diagnose=_diagnose_meta),
    Exercise("fix_flatten_size", lambda c, s, k, x: _reference_conv_net(c, s, k)(x), [
        Case("1x28x28 images (Omniglot), 5 classes", lambda g: (1, 28, 5, torch.randn(4, 1, 28, 28, generator=g))),
        Case("3x32x32 images (CIFAR-10), 10 classes", lambda g: (3, 32, 10, torch.randn(2, 3, 32, 32, generator=g))),
        Case("1x30x30 images (pooling floors 15 to 7), 3 classes", lambda g: (1, 30, 3, torch.randn(3, 1, 30, 30, generator=g))),
    ], [
        "Follow one image through the network and write the shape after each layer: conv (padding 1) keeps the side, 2x2 max-pooling halves it.",
        "After two poolings a side S becomes S // 2 // 2, with 32 channels: the first Linear layer needs 32 * (S // 4) ** 2 inputs, computed from image_size.",
        "side = image_size // 2 // 2; self.head = nn.Linear(32 * side * side, n_classes).",
    ], compare=_compare_logits_shape, diagnose=lambda fn, g: _diagnose_flatten(fn.args[0], g)),
]:
    register(_exercise)


def check_fix_positive_pairs(fn): return check("fix_positive_pairs", fn)
def check_fix_similarity_shape(fn): return check("fix_similarity_shape", fn)
def check_fix_cached_logits(fn): return check("fix_cached_logits", fn)
def check_fix_meta_update(fn): return check("fix_meta_update", fn)


def check_fix_flatten_size(net_class):
    """`net_class(in_channels, image_size, n_classes)` builds the network; it is tried on three image sizes."""
    if not callable(net_class):
        return check("fix_flatten_size", net_class)
    return check("fix_flatten_size", functools.partial(_run_net, net_class))


__all__ = ["check_fix_positive_pairs", "check_fix_similarity_shape", "check_fix_cached_logits", "check_fix_meta_update",
           "check_fix_flatten_size"]
