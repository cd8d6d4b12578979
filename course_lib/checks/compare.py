"""Comparing a learner's output with the reference's: None when they match, else a sentence saying how not.

Tensors are compared by type, shape, dtype, finiteness and then value (the largest difference, where it
is); where the reference itself is inf or NaN only the same value matches. Numbers compare within the
tolerances, anything else by equality.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def flatten(out: Any) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def compare_outputs(got: Any, want: Any, rtol: float, atol: float) -> str | None:
    """None if `got` matches `want`, else a sentence saying how it differs."""
    # A single expected value is compared as one item, so a learner's list gets "returned a list".
    want_items = flatten(want)
    got_items = flatten(got) if isinstance(want, (tuple, list)) else [got]
    if len(got_items) != len(want_items):
        return f"returned {len(got_items)} value(s), expected {len(want_items)}."
    for k, (g, w) in enumerate(zip(got_items, want_items)):
        where = f"output {k}: " if len(want_items) > 1 else ""
        if isinstance(w, torch.Tensor):
            if not isinstance(g, torch.Tensor):
                return f"{where}returned a {type(g).__name__}, expected a torch.Tensor of shape {tuple(w.shape)}."
            if g.shape != w.shape:
                return f"{where}wrong shape: got {tuple(g.shape)}, expected {tuple(w.shape)}."
            if g.dtype != w.dtype:
                return f"{where}wrong dtype: got {g.dtype}, expected {w.dtype}."
            if w.is_floating_point():
                gd, wd = g.detach().double(), w.detach().double()
                w_finite = torch.isfinite(wd)
                if (w_finite & ~torch.isfinite(gd)).any():
                    return f"{where}contains NaN or inf where the reference is finite (often an unstable exp or a log of 0)."
                # Where the reference itself is inf or NaN (a masked logit, say), only the same value matches:
                # a difference there is inf or NaN, which no tolerance comparison would flag.
                same = (gd == wd) | (torch.isnan(gd) & torch.isnan(wd))
                odd = ~w_finite & ~same
                if odd.any():
                    idx = tuple(int(i) for i in odd.nonzero()[0])
                    return (f"{where}wrong values at index {idx}: got {gd[idx].item()}, expected {wd[idx].item()} "
                            "(where the reference is inf or NaN, the same value is expected).")
                diff = torch.where(w_finite, (gd - wd).abs(), 0.0)
                bound = atol + rtol * torch.where(w_finite, wd.abs(), 0.0)
                if (diff > bound).any():
                    idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.dim() else ()
                    at = f" at index {idx}" if idx else ""
                    return (f"{where}wrong values: largest difference {diff.max().item():.3g}{at} "
                            f"(got {gd[idx].item():.6g}, expected {wd[idx].item():.6g}).")
            elif not torch.equal(g, w):
                wrong = (g != w).nonzero()[:3].tolist()
                return f"{where}wrong values at indices {wrong} (got {g[tuple(wrong[0])].item()}, expected {w[tuple(wrong[0])].item()})."
        elif isinstance(w, float):
            if not isinstance(g, (int, float)) and not (isinstance(g, torch.Tensor) and g.numel() == 1):
                return f"{where}returned a {type(g).__name__}, expected a number."
            value = float(g)
            # Written so that NaN fails: every comparison with NaN is False.
            close = value == w or (math.isnan(value) and math.isnan(w)) or (
                math.isfinite(w) and abs(value - w) <= atol + rtol * abs(w))
            if not close:
                return f"{where}wrong value: got {value:.6g}, expected {w:.6g}."
        elif g != w:
            return f"{where}got {g!r}, expected {w!r}."
    return None


def gradient_problem(got_grads: list, want_grads: list, rtol: float, atol: float) -> str | None:
    """None if the learner's gradients w.r.t. each input match the reference's, else what differs."""
    for k, (g, w) in enumerate(zip(got_grads, want_grads)):
        if w is None:   # the reference treats this input as a constant (e.g. a stop-gradient)
            if g is not None and bool((g != 0).any()):
                return (f"a gradient reaches input {k}, where none should: it enters as a constant, a stop-gradient "
                        "(.detach()).")
            continue
        if g is None:
            return (f"no gradient reaches input {k}: something detaches the computation "
                    "(.detach(), .item(), .numpy(), torch.no_grad or a new tensor built from values).")
        problem = compare_outputs(g, w, rtol, atol)
        if problem is not None:
            return f"the values match but the gradient w.r.t. input {k} does not: {problem}"
    return None


__all__ = ["compare_outputs", "flatten", "gradient_problem"]
