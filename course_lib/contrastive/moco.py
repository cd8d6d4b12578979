"""MoCo: negatives from a queue of past keys, encoded by a slowly moving copy of the encoder.

    queue = KeyQueue(size=4096, dim=128, keys_per_step=2 * 64)
    momentum_update(key_model, model, momentum=0.99)     # key <- m key + (1 - m) query, no gradient
    loss = moco_loss(q, k, queue.keys, temperature=0.2)  # InfoNCE: k among the queue's negatives
    queue.push(k)                                        # the newest keys replace the oldest

SimCLR's negatives are the other images of the batch, so more negatives cost a bigger batch. MoCo (He
et al., CVPR 2020) keeps the keys of the last K images in a queue instead: K negatives at the cost of a
batch of 64. The keys in the queue were encoded at different steps, so they must come from an encoder
that changes slowly, or they would not be comparable: the key encoder is an exponential moving average
(EMA) of the query encoder, and takes no gradient. MoCo v2 (Chen et al., 2020) adds SimCLR's MLP head
and views; the kit's step also uses the symmetric loss (each view is a query once), as solo-learn's
MoCo v2+ does (da Costa et al., JMLR 2022).

The queue is a ring buffer: `ptr` marks the oldest block, which the next keys overwrite, so a step
copies B keys instead of shifting K.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.contrastive.losses import validate_embeddings, validate_temperature


def validate_momentum(momentum: float) -> float:
    """Return `momentum` as a float, or raise unless 0 <= momentum < 1."""
    if isinstance(momentum, bool) or not isinstance(momentum, Real) or not math.isfinite(momentum):
        raise TypeError(f"momentum must be a number in [0, 1), got {momentum!r}.")
    if not 0 <= momentum < 1:
        raise ValueError(
            f"momentum must be in [0, 1), got {momentum}: the key encoder keeps this fraction of itself each step "
            "(1 would never learn, above 1 diverges). MoCo uses 0.999 for long runs, 0.99 for short ones.")
    return float(momentum)


@torch.no_grad()
def momentum_update(key: nn.Module, query: nn.Module, momentum: float) -> None:
    """EMA step, in place: every parameter of `key` becomes momentum * key + (1 - momentum) * query.

    `key` and `query` must be the same architecture. Buffers (BatchNorm's running statistics) are not
    averaged: the key encoder's own forward passes keep them, as in MoCo.
    """
    momentum = validate_momentum(momentum)
    key_params, query_params = list(key.parameters()), list(query.parameters())
    shapes = [tuple(p.shape) for p in key_params], [tuple(p.shape) for p in query_params]
    if shapes[0] != shapes[1]:
        raise ValueError("the key and query encoders must be the same architecture (a copy.deepcopy of the query "
                         f"model): their parameter shapes differ ({len(shapes[0])} vs {len(shapes[1])} tensors).")
    torch._foreach_lerp_(key_params, query_params, 1 - momentum)   # k + (1 - m)(q - k) = m k + (1 - m) q


def enqueue(queue: torch.Tensor, ptr: int, keys: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Write `keys` (B, D) over the oldest B rows of the ring buffer `queue` (K, D), in place.

    ptr: the row where the oldest keys start (an int, or a 0-d tensor). Returns (queue, the next ptr = (ptr + B) mod K). K must be a
    multiple of B, so a block never wraps around the end.
    """
    size, batch = queue.shape[0], keys.shape[0]
    if keys.dim() != 2 or keys.shape[1] != queue.shape[1]:
        raise ValueError(f"keys must be (B, {queue.shape[1]}) to fit the queue {tuple(queue.shape)}, got {tuple(keys.shape)}.")
    if batch == 0 or size % batch:
        raise ValueError(
            f"the queue size ({size}) must be a multiple of the keys pushed per step ({batch}), so that each block "
            "of keys replaces exactly one block of the oldest: choose queue_size = a multiple of that number.")
    # Index arithmetic rather than a slice, so `ptr` may also be a 0-d tensor on the device: no host sync.
    rows = (ptr + torch.arange(batch, device=queue.device)) % size
    queue.index_copy_(0, rows, keys.detach().to(queue.dtype))
    return queue, (ptr + batch) % size


class KeyQueue(nn.Module):
    """The queue of negatives: `keys` (size, dim) unit rows, and `ptr`, both buffers (saved in checkpoints).

    It starts with random unit vectors, as MoCo's does; they are all replaced after size / keys_per_step steps.
    """

    def __init__(self, size: int, dim: int, keys_per_step: int, generator: torch.Generator | None = None):
        super().__init__()
        if keys_per_step < 1 or size < keys_per_step or size % keys_per_step:
            raise ValueError(
                f"queue_size={size} must be a positive multiple of the keys pushed per step ({keys_per_step}: "
                "2 x batch_size, both views' keys): each step's keys then replace exactly one block of the oldest. "
                f"For example {keys_per_step * max(1, round(size / max(keys_per_step, 1)))}.")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def push(self, keys: torch.Tensor) -> None:
        """keys: (B, dim), B = keys_per_step; they replace the oldest B rows (normalised first)."""
        _, ptr = enqueue(self.keys, self.ptr, F.normalize(keys.detach().float(), dim=1))
        self.ptr.copy_(ptr)


def moco_loss(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE of MoCo: each query q_i must pick its key k_i among k_i and the K negatives. Returns a scalar.

    q: (B, D) queries (gradient flows); k: (B, D) keys of the other view (detached: the key encoder takes
    no gradient); negatives: (K, D) the queue. All are L2-normalised inside. Logits (B, 1 + K), the
    positive in column 0: the same cross-entropy as NT-Xent, with negatives from the queue.
    """
    temperature = validate_temperature(temperature)
    for name, t in (("q", q), ("k", k), ("negatives", negatives)):
        validate_embeddings(t, name, paired=False)
    if q.shape != k.shape or negatives.shape[1] != q.shape[1]:
        raise ValueError(f"q and k must be (B, D) and the negatives (K, D), got q {tuple(q.shape)}, k "
                         f"{tuple(k.shape)}, negatives {tuple(negatives.shape)}.")
    q, k = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)                        # (B, 1)
    negative = q @ F.normalize(negatives.detach(), dim=1).T             # (B, K)
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def moco_loss_reference(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor,
                        temperature: float = 0.2) -> torch.Tensor:
    """moco_loss one query at a time, as the formula reads: -log e^(q.k/t) / (e^(q.k/t) + sum_j e^(q.n_j/t))."""
    total = q.new_zeros(())
    for qi, ki in zip(F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)):
        candidates = torch.cat([(qi @ ki)[None], F.normalize(negatives.detach(), dim=1) @ qi]) / temperature
        total = total - (candidates[0] - torch.logsumexp(candidates, dim=0))
    return total / len(q)


__all__ = ["validate_momentum", "momentum_update", "enqueue", "KeyQueue", "moco_loss", "moco_loss_reference"]
