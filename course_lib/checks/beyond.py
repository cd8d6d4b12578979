"""Exercises of notebook 08 (beyond SimCLR): MoCo's queue and its momentum encoder, SimSiam's stop-gradient
loss, and the self-check. The references are the library's own functions (`course_lib.contrastive.moco`,
`course_lib.contrastive.collapse`)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks.compare import compare_outputs
from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.quiz import Choice, Number, self_check
from course_lib.contrastive.collapse import simsiam_loss
from course_lib.contrastive.moco import enqueue, momentum_update

# ---------------------------------------------------------------- enqueue


def _queue_case(size: int, dim: int, ptr: int, batch: int, key_dim: int | None = None):
    def make(gen: torch.Generator) -> tuple:
        queue = F.normalize(torch.randn(size, dim, generator=gen), dim=1)
        keys = F.normalize(torch.randn(batch, key_dim or dim, generator=gen), dim=1)
        return queue, ptr, keys
    return make


register(Exercise(
    name="enqueue",
    reference=enqueue,
    cases=[
        Case("the first block of an empty ring (ptr 0)", _queue_case(8, 4, 0, 2)),
        Case("a block in the middle of the ring", _queue_case(12, 5, 6, 3)),
        Case("the last block: the pointer wraps around to 0", _queue_case(8, 4, 6, 2)),
        Case("keys of another width than the queue's", _queue_case(8, 4, 0, 2, key_dim=3), raises=ValueError),
        Case("a queue size (10) that is not a multiple of the keys per step (4)", _queue_case(10, 4, 0, 4),
             raises=ValueError),
    ],
    hints=[
        "The queue is a ring: rows ptr, ptr + 1, ..., ptr + B - 1 hold the oldest keys, and they are the ones the "
        "new keys replace. Nothing else moves.",
        "queue[ptr:ptr + B] = keys writes the block in place. The next oldest block starts where this one ends, "
        "and after the last row the ring starts again at row 0: (ptr + B) % K.",
        "Check first: keys.shape[1] must equal queue.shape[1], and K % B must be 0 (otherwise a block would run "
        "past the end); raise ValueError with a message that says which.",
    ],
    rtol=0, atol=0,
    library=(enqueue,),
))


def check_enqueue(fn):
    """fn(queue (K, D), ptr, keys (B, D)) -> (queue, next ptr): the keys overwrite the oldest B rows, in place."""
    return check("enqueue", fn)


# ---------------------------------------------------------------- momentum_update
# The learner writes momentum_update(key, query, m) -> None, in place. Models keep state, so each case
# builds identically seeded key and query models, applies the update `steps` times while the query moves
# (as training moves it), and compares every parameter and buffer of the key model afterwards.


def _encoders(seed: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    query = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    query(torch.randn(8, 5))                    # non-default BatchNorm running statistics
    key = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).requires_grad_(False)
    return key, query


def _after_updates(fn, seed: int, steps: int, momentum: float) -> tuple[torch.Tensor, ...]:
    key, query = _encoders(seed)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        fn(key, query, momentum)
        with torch.no_grad():                   # a training step of the query encoder, between two updates
            for p in query.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return (*[p.detach().clone() for p in key.parameters()], *[b.clone() for b in key.buffers()])


def _compare_key(got, want) -> str | None:
    """Parameters first, then buffers: say which of the two differs."""
    params = len(list(_encoders(0)[0].parameters()))
    if not isinstance(got, tuple) or len(got) != len(want):
        return "the check compares the key model after your updates; did the function replace the model?"
    problem = compare_outputs(got[:params], want[:params], rtol=1e-6, atol=1e-7)
    if problem is not None:
        return f"the key's parameters are not m * key + (1 - m) * query after each update: {problem}"
    if compare_outputs(got[params:], want[params:], rtol=0, atol=0) is not None:
        return ("the parameters are right, but the key's buffers (BatchNorm's running statistics) changed: update "
                "the parameters only (key.parameters()), as MoCo does; the key's forward passes keep its buffers.")
    return None


def _ema_case(steps: int, momentum: float):
    return lambda gen: (int(torch.randint(2**31, (), generator=gen)), steps, momentum)


register(Exercise(
    name="momentum_update",
    reference=functools.partial(_after_updates, momentum_update),
    cases=[
        Case("one update, m = 0.9", _ema_case(1, 0.9)),
        Case("five updates while the query moves, m = 0.99", _ema_case(5, 0.99)),
        Case("m = 0: the key becomes a copy of the query", _ema_case(2, 0.0)),
        Case("m = 1 would freeze the key encoder for good", _ema_case(1, 1.0), raises=ValueError),
        Case("m = -0.5 is not an average", _ema_case(1, -0.5), raises=ValueError),
    ],
    hints=[
        "Walk the two models' parameters side by side: zip(key.parameters(), query.parameters()). Each key "
        "parameter becomes m * itself + (1 - m) * the query's.",
        "Change the key's tensors in place (pk.mul_(m).add_(pq, alpha=1 - m)) under torch.no_grad(): the key "
        "encoder takes no gradient. Buffers (BatchNorm's running statistics) are left alone.",
        "First, raise ValueError unless 0 <= m < 1.",
    ],
    compare=_compare_key,
    library=(momentum_update,),
))


def check_momentum_update(fn):
    """fn(key, query, m) -> None: every parameter of `key` becomes m * key + (1 - m) * query, in place."""
    return check("momentum_update", functools.partial(_after_updates, fn))


# ---------------------------------------------------------------- simsiam_loss


def _simsiam_case(n: int, d: int, scale: float = 1.0):
    def make(gen: torch.Generator) -> tuple:
        z1 = torch.randn(n, d, generator=gen, dtype=torch.float64) * scale
        z2 = z1 + 0.5 * torch.randn(n, d, generator=gen, dtype=torch.float64)
        p1 = z1 + 0.3 * torch.randn(n, d, generator=gen, dtype=torch.float64)
        p2 = z2 + 0.3 * torch.randn(n, d, generator=gen, dtype=torch.float64)
        return p1, p2, z1, z2
    return make


register(Exercise(
    name="simsiam_loss",
    reference=simsiam_loss,
    cases=[
        Case("a batch of 6 pairs", _simsiam_case(6, 8), grad=True),
        Case("projections of very different lengths (cosine ignores them)", _simsiam_case(5, 4, scale=30.0),
             grad=True),
        Case("one pair", _simsiam_case(1, 3), grad=True),
    ],
    hints=[
        "D(p, z) is the negative cosine similarity averaged over the batch: -F.cosine_similarity(p, z, dim=1).mean().",
        "The loss is symmetric: (D(p1, z2) + D(p2, z1)) / 2, each prediction against the OTHER view's projection.",
        "The stop-gradient: z1 and z2 enter as targets only, z.detach(). The check compares the gradient w.r.t. "
        "each input, so a missing detach shows as a gradient reaching z1 or z2.",
    ],
    rtol=1e-6, atol=1e-9,
    library=(simsiam_loss,),
))


def check_simsiam_loss(fn):
    """fn(p1, p2, z1, z2) -> scalar: (D(p1, sg(z2)) + D(p2, sg(z1))) / 2, D the mean negative cosine."""
    return check("simsiam_loss", fn)


# ---------------------------------------------------------------- self_check_08

QUEUE, BATCH, MOMENTUM, HORIZON = 4096, 64, 0.99, 100  # questions 1 and 3


check_self_check_08 = self_check("self_check_08", {
    1: Number(lambda: QUEUE / (2 * BATCH),
              why=f"each step pushes the keys of both views, 2 x {BATCH} = {2 * BATCH}, so a key stays "
                  f"{QUEUE} / {2 * BATCH} = {QUEUE // (2 * BATCH)} steps in the queue: its negatives were encoded by "
                  "the key encoder of up to that many steps ago, which is why that encoder must change slowly.",
              hint=f"how many keys enter the queue per step, and how many steps until {QUEUE} have entered?"),
    2: Choice("b", why="the queue holds keys encoded at many past steps; if the key encoder were the query encoder "
                       "itself, those keys would come from many different networks and the query would be compared "
                       "with inconsistent negatives. The moving average changes slowly, so they stay comparable.",
              wrong={"a": "the key encoder does run a forward pass every step; it only skips the backward pass, "
                          "and that is not why MoCo has it.",
                     "c": "MoCo avoids collapse with its negatives, as SimCLR does; the EMA alone does not prevent "
                          "collapse (SimSiam shows the stop-gradient and predictor matter there)."}),
    3: Number(lambda: MOMENTUM ** HORIZON,
              why=f"each update keeps a fraction m of the key's weights, so after {HORIZON} updates m^{HORIZON} = "
                  f"{MOMENTUM ** HORIZON:.3f} of them are still the weights of {HORIZON} steps ago: the key encoder "
                  f"averages roughly the last 1 / (1 - m) = {1 / (1 - MOMENTUM):.0f} query encoders.",
              hint="one update: key = m key + (1 - m) query. What share of the old key survives two updates? n?"),
    4: Choice("a", why="the alignment loss ||z1 - z2||^2 is 0, its minimum, when every image maps to one point: "
                       "the loss cannot tell learning from collapse, so uniformity and the effective rank must be "
                       "watched instead.",
              wrong={"b": "collapse is the loss's global minimum, reached, not a failure to optimise: the loss "
                          "falls to about 0.",
                     "c": "a smaller learning rate only slows the fall toward the same minimum."}),
}, hints=[
    "Question 1 counts keys; 3 is a power; 2 is about the MoCo section, 4 about the collapse section.",
    "Question 1: each step pushes 2 x 64 keys. Question 3: one update keeps m of the old key, two keep m * m.",
])


__all__ = ["check_enqueue", "check_momentum_update", "check_simsiam_loss", "check_self_check_08"]
