"""Exercise `sample_episode` of notebook 06: draw one N-way K-shot episode from Omniglot's image tensor.

The reference is the library's `course_lib.data.sample_episodes` (one task of it); the learner's draws differ
from the library's, so an episode is checked by what it must hold, not value by value."""

from __future__ import annotations

import torch

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.data import sample_episodes

__all__ = ["check_sample_episode"]


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
    library=(sample_episodes,),
))


def check_sample_episode(fn):
    """fn(images (C, D, 1, 28, 28), n_way, k_shot, n_query, generator) -> x_support (N*K, 1, 28, 28),
    y_support (N*K,) int64, x_query (N*Q, 1, 28, 28), y_query (N*Q,) int64: one N-way K-shot episode."""
    return check("sample_episode", _episodes_of(fn) if callable(fn) else fn)
