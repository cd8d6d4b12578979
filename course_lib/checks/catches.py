"""Exercise `catches` of notebook 01's autopsy: the learner writes a test for NT-Xent losses, graded on a hidden
bank of buggy and correct ones: a test that calls the library's loss still has to know which inputs expose
which bug (a second batch for a cache, a temperature other than 1, rows not of unit length, a small
temperature for an overflow, the gradient for a detached loss)."""

from __future__ import annotations

import weakref
from typing import Callable

import torch
import torch.nn.functional as F

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.contrastive import losses

__all__ = ["check_catches"]


# ---------------------------------------------------------------- the hidden bank

_BUGGY: weakref.WeakSet = weakref.WeakSet()  # the bank's buggy losses (kept here, not on the functions)


def _buggy(fn: Callable) -> Callable:
    _BUGGY.add(fn)
    return fn


def _logits(z: torch.Tensor, temperature: float) -> torch.Tensor:
    zn = F.normalize(z, dim=1)
    return (zn @ zn.T / temperature).masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))


def _targets(z: torch.Tensor) -> torch.Tensor:
    return losses.positive_index(len(z)).to(z.device)


@_buggy
def _adjacent_pairs(z, temperature=0.5):
    return F.cross_entropy(_logits(z, temperature), torch.arange(len(z)) ^ 1)


def _cached():
    cache = {}

    @_buggy
    def cached(z, temperature=0.5):
        if "logits" not in cache:
            cache["logits"] = _logits(z, temperature)
        return F.cross_entropy(cache["logits"], _targets(z))

    return cached


@_buggy
def _self_included(z, temperature=0.5):
    zn = F.normalize(z, dim=1)
    return F.cross_entropy(zn @ zn.T / temperature, _targets(z))


@_buggy
def _temperature_ignored(z, temperature=0.5):
    return F.cross_entropy(_logits(z, 1.0), _targets(z))


@_buggy
def _times_temperature(z, temperature=0.5):
    return F.cross_entropy(_logits(z, 1.0 / temperature), _targets(z))


@_buggy
def _dot_products(z, temperature=0.5):
    logits = (z @ z.T / temperature).masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, _targets(z))


@_buggy
def _summed(z, temperature=0.5):
    return F.cross_entropy(_logits(z, temperature), _targets(z), reduction="sum")


@_buggy
def _first_half_only(z, temperature=0.5):
    n = len(z) // 2
    return F.cross_entropy(_logits(z, temperature)[:n], _targets(z)[:n])


@_buggy
def _detached(z, temperature=0.5):
    return losses.nt_xent_reference(z.detach(), temperature)


@_buggy
def _naive_exp(z, temperature=0.5):
    e = _logits(z, temperature).exp()
    return -(e[torch.arange(len(z)), _targets(z)] / e.sum(dim=1)).log().mean()


@_buggy
def _positive_not_in_denominator(z, temperature=0.5):
    logits = _logits(z, temperature)
    positive = logits[torch.arange(len(z)), _targets(z)]
    negatives = logits.scatter(1, _targets(z)[:, None], float("-inf"))
    return (negatives.logsumexp(dim=1) - positive).mean()


def _row_by_row(z, temperature=0.5):
    """Correct, written as a loop over anchors."""
    zn, rows, total = F.normalize(z, dim=1), len(z), 0.0
    for i in range(rows):
        s = zn[i] @ zn.T / temperature
        others = torch.cat([s[:i], s[i + 1:]])
        total = total + torch.logsumexp(others, dim=0) - s[(i + rows // 2) % rows]
    return total / rows


def _two_directions(z, temperature=0.5):
    """Correct, written as the mean of two (N, 2N) cross-entropies, one per half of the batch."""
    n, logits = len(z) // 2, _logits(z, temperature)
    targets = _targets(z)
    return (F.cross_entropy(logits[:n], targets[:n]) + F.cross_entropy(logits[n:], targets[n:])) / 2


def _library(z, temperature=0.5):
    return losses.nt_xent(z, temperature, impl="torch")


_BANK = [
    ("a correct NT-Xent: the library's", lambda: _library),
    ("positives paired i with i ^ 1 (rows 0-1, 2-3, ...) instead of i with i + N", lambda: _adjacent_pairs),
    ("logits computed on the first call and reused for every later batch", _cached),
    ("each row compared with itself (the diagonal not masked)", lambda: _self_included),
    ("the temperature ignored (always 1)", lambda: _temperature_ignored),
    ("a correct NT-Xent written as a loop over rows", lambda: _row_by_row),
    ("the logits multiplied by the temperature instead of divided", lambda: _times_temperature),
    ("dot products of unnormalised rows instead of cosine similarities", lambda: _dot_products),
    ("the sum over rows instead of the mean", lambda: _summed),
    ("a correct NT-Xent written as two half-batch cross-entropies", lambda: _two_directions),
    ("only the first N rows used as anchors", lambda: _first_half_only),
    ("the right value, but computed on z.detach(): no gradient reaches the encoder", lambda: _detached),
    ("exp then log without the max trick (overflows at small temperatures)", lambda: _naive_exp),
    ("the positive left out of the denominator (the loss can go negative)", lambda: _positive_not_in_denominator),
    ("a correct NT-Xent: the library's reference", lambda: losses.nt_xent_reference),
]


def _verdict(loss_fn: Callable) -> bool:
    """The reference of `catches`: True for the bank's buggy losses, False for its correct ones."""
    return loss_fn in _BUGGY


def _compare_verdict(got, want: bool) -> str | None:
    if not isinstance(got, (bool, torch.Tensor)) or (isinstance(got, torch.Tensor) and got.numel() != 1):
        return f"catches() returned {got!r}; return True (a bug was caught) or False (the loss passed every test)."
    if bool(got) == want:
        return None
    if want:
        return "your test let this bug through (returned False): find an input on which it shows."
    return "your test rejected this correct loss (returned True): check your expected values and tolerances."


def check_catches(fn):
    """fn(loss_fn) -> bool: True if loss_fn(z (2N, D) float32, temperature) is not a correct NT-Xent (value
    and gradient), False if it passes every test. Tried on a hidden bank of buggy and correct losses."""
    return check("catches", fn)


register(Exercise("catches", _verdict, [Case(name, lambda g, make=make: (make(),)) for name, make in _BANK], [
    "Compare the loss with one you trust (yours from section 3, or the library's nt_xent) on a random batch, "
    "and return True at the first difference.",
    "One batch at t = 0.5 is not enough: some bugs show only on a second call (a cache), at a temperature other "
    "than 1, on rows that are not unit length, or at a small temperature such as 0.01 (overflow). Try several.",
    "A right value without a gradient is still a bug: get torch.autograd.grad(loss, z) and compare the gradient "
    "too. A loss that raises is caught as well: wrap the call in try/except and return True.",
], compare=_compare_verdict))
