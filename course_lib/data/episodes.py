"""Few-shot episodes: a batch of N-way K-shot tasks drawn at once, on the device where the data lives.

    ep = sample_episodes(images, n_way=5, k_shot=1, n_query=15, meta_batch=32, generator=gen)
    ep.x_support  # (32, 5*1, 1, 28, 28)     ep.y_support  # (32, 5)   labels 0..4
    ep.x_query    # (32, 5*15, 1, 28, 28)    ep.y_query    # (32, 75)

Published MAML code builds each task in Python, image by image; here a whole meta-batch is a few
tensor operations: `argsort` of random keys picks distinct classes per task and distinct drawings
per class, one gather collects them, and one more gather rotates each class by its own quarter
turns. Which class gets label 0, 1, ... is random per task (the classes come out in random order).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch


class Episodes(NamedTuple):
    """A batch of T tasks, S support and Q query examples each: what every meta-learner takes.

    x_support (T, S, *x), y_support (T, S) int64 class labels or (T, S, *y) float regression targets,
    x_query (T, Q, *x), y_query (T, Q[, *y]). From `sample_episodes` (classification, S = N*K, Q = N*Q,
    labels 0..N-1 grouped by label: y_support = [0]*K + [1]*K + ...) or `meta.sinusoid` (regression).
    """

    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor


def _distinct(n_rows: int, n_items: int, n_pick: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """(n_rows, n_pick) int64: per row, `n_pick` distinct indices in [0, n_items), uniformly at random."""
    keys = torch.rand(n_rows, n_items, generator=generator, device=device)
    return keys.argsort(dim=1)[:, :n_pick]


def sample_episodes(images: torch.Tensor, n_way: int, k_shot: int, n_query: int, meta_batch: int,
                    generator: torch.Generator | None = None, rotate: bool = False) -> Episodes:
    """Draw `meta_batch` tasks of `n_way` classes with `k_shot` support and `n_query` query examples each.

    images: (C, D, *image shape), C classes with D drawings each (e.g. Omniglot (C, 20, 1, 28, 28));
    every output tensor is on images.device. generator: a torch.Generator for reproducible draws
    (the random numbers are drawn on its device, so a CPU generator gives the same tasks whatever
    device holds the images). rotate: treat each (class, rotation by 0/90/180/270 degrees) as its own
    class (4C classes), as MAML does for Omniglot meta-training; needs square images.
    Raises ValueError if the request cannot be met (more ways than classes, more shots + queries
    than drawings per class).
    """
    if images.ndim < 3:
        raise ValueError(f"images must be (classes, drawings, *image shape), e.g. (1200, 20, 1, 28, 28); "
                         f"got shape {tuple(images.shape)}.")
    # Any integral number (a numpy int from a config, say) is fine; a query set is needed to score a task.
    counts = {"n_way": n_way, "k_shot": k_shot, "n_query": n_query, "meta_batch": meta_batch}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")
    n_way, k_shot, n_query, meta_batch = (int(v) for v in counts.values())
    n_classes, n_drawings = images.shape[:2]
    if rotate and (images.ndim < 4 or images.shape[-1] != images.shape[-2]):
        raise ValueError(f"rotate=True needs square images (..., H, W) with H == W; got {tuple(images.shape[2:])}.")
    available = n_classes * (4 if rotate else 1)
    if n_way > available:
        raise ValueError(f"n_way={n_way} but only {available} classes are available"
                         f"{' (with 4 rotations each)' if rotate else ''}; use fewer ways or more classes.")
    per_class = k_shot + n_query
    if per_class > n_drawings:
        raise ValueError(f"k_shot + n_query = {k_shot} + {n_query} = {per_class} examples per class, but each class has "
                         f"only {n_drawings} drawings; lower k_shot or n_query.")

    where = generator.device if generator is not None else images.device
    classes = _distinct(meta_batch, available, n_way, generator, where)  # (T, N) in [0, available)
    drawings = _distinct(meta_batch * n_way, n_drawings, per_class, generator, where)  # (T*N, K+Q)
    classes, drawings = classes.to(images.device), drawings.to(images.device).view(meta_batch, n_way, per_class)
    char, turns = classes % n_classes, classes // n_classes  # (T, N): which character, how many quarter turns
    x = images[char.unsqueeze(-1), drawings]  # (T, N, K+Q, *image shape): one gather for the whole meta-batch
    if rotate:  # a rotation is a fixed permutation of the pixels: one gather applies each class's own turn
        side = x.shape[-1]
        where_from = torch.arange(side * side, device=x.device).view(side, side)
        turn_maps = torch.stack([torch.rot90(where_from, k).flatten() for k in range(4)])  # (4, H*W)
        pick = turn_maps[turns].view(meta_batch, n_way, *([1] * (x.ndim - 4)), side * side)  # (T, N, 1.., H*W)
        flat = x.flatten(-2)  # (T, N, K+Q, C, H*W)
        x = flat.gather(-1, pick.expand_as(flat)).view(x.shape)

    labels = torch.arange(n_way, device=images.device).view(1, n_way, 1)
    y = labels.expand(meta_batch, n_way, per_class)  # (T, N, K+Q): label = position of the class in its task
    shape = x.shape[3:]
    return Episodes(
        x_support=x[:, :, :k_shot].reshape(meta_batch, n_way * k_shot, *shape),
        y_support=y[:, :, :k_shot].reshape(meta_batch, n_way * k_shot),
        x_query=x[:, :, k_shot:].reshape(meta_batch, n_way * n_query, *shape),
        y_query=y[:, :, k_shot:].reshape(meta_batch, n_way * n_query),
    )


__all__ = ["Episodes", "sample_episodes"]
