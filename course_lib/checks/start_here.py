"""Exercise of notebook 00 (start here): L2-normalise the rows of a matrix, the warm-up for every later loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.checks.framework import Case, Exercise, check, register


def _rows(gen: torch.Generator, rows: int, dim: int) -> torch.Tensor:
    return torch.randn(rows, dim, generator=gen)  # (rows, dim) float32


def _l2_normalize_reference(x: torch.Tensor) -> torch.Tensor:
    """torch's own: x (N, D) / max(||x_i||, 1e-12), so a zero row stays 0."""
    return F.normalize(x, dim=1)


register(Exercise(
    name="l2_normalize",
    reference=_l2_normalize_reference,
    cases=[
        Case("8 rows of 4 numbers, with gradient", lambda g: (_rows(g, 8, 4),), grad=True),
        Case("rows of very different lengths (1e-3 to 1e3)", lambda g: (_rows(g, 7, 3) * torch.logspace(-3, 3, 7)[:, None],)),
        Case("a row of zeros (must stay 0, not become NaN)", lambda g: (torch.cat([torch.zeros(1, 4), _rows(g, 3, 4)]),)),
    ],
    hints=[
        "Divide each row by its length: x.norm(dim=1, keepdim=True) is the (N, 1) column of row norms, which broadcasts over D.",
        "A row of zeros has norm 0, and 0 / 0 is NaN. Divide by norms.clamp_min(1e-12) instead.",
        "return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)   (the same as F.normalize(x, dim=1)).",
    ],
))


def check_l2_normalize(fn):
    """Check fn(x (N, D) float) -> (N, D), each row scaled to length 1 (a row of zeros stays zero)."""
    return check("l2_normalize", fn)


__all__ = ["check_l2_normalize"]
