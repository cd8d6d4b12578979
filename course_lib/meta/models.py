"""The two networks of the meta-learning notebooks: Conv-4 for Omniglot and a small MLP for sinusoids.

Both are ordinary `nn.Module`s; the meta-learning code in `course_lib.meta` calls them functionally
(`torch.func.functional_call(model, params, (x,))`) with a dict of parameters that may be adapted
copies of the module's own. Conv-4's BatchNorm uses the statistics of the batch it is given and keeps
no running averages (`track_running_stats=False`): a task's support set and its query set are each
normalised on their own, as in MAML, and there is no buffer that `vmap` over tasks would have to update.

That BatchNorm is written with plain tensor operations (`BatchStatNorm2d`) rather than
`nn.BatchNorm2d(track_running_stats=False)`: the two compute the same function, but in torch up to at
least 2.14 the batching rule of the fused batch_norm backward is wrong when it is differentiated again
under `vmap` (pytorch/functorch#534), which silently corrupts second-order MAML meta-gradients.
tests/test_meta.py pins both facts: same values as nn.BatchNorm2d, and vmap == loop for MAML.
"""

from __future__ import annotations

import torch
from torch import nn


class BatchStatNorm2d(nn.Module):
    """BatchNorm2d that always normalises with the statistics of the current batch (no running stats).

    Same function and parameter names (`weight`, `bias`) as `nn.BatchNorm2d(c, track_running_stats=False)`,
    built from differentiable tensor ops so that second-order gradients are right under `vmap`.
    forward(x: float (B, C, H, W)) -> float (B, C, H, W)
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(0, 2, 3))  # (C,)
        var = (x * x).mean(dim=(0, 2, 3)) - mean * mean  # (C,) biased, as BatchNorm normalises
        scale = self.weight * torch.rsqrt(var.clamp_min(0) + self.eps)  # (C,): folded so the big tensor
        shift = self.bias - mean * scale  # is touched by one multiply and one add
        return x * scale[:, None, None] + shift[:, None, None]


DOWNSAMPLING = ("pool", "stride")


def _block(c_in: int, c_out: int, downsample: str) -> nn.Sequential:
    """conv 3x3 -> BatchNorm (batch statistics) -> ReLU, halving the image side on the way.

    "pool": a stride-1 convolution, then a 2x2 max-pool (ProtoNet; MAML on MiniImagenet).
    "stride": a stride-2 convolution and no pooling (MAML on Omniglot): the convolution computes only
    the pixels that are kept, a quarter of the work.
    """
    if downsample == "pool":
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), BatchStatNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), BatchStatNorm2d(c_out), nn.ReLU())


class Conv4(nn.Module):
    """The four-block CNN of the MAML / ProtoNet papers, for 1x28x28 Omniglot images.

    n_way: classes of the linear head (MAML). None: no head; `forward` returns the features (ProtoNet).
    channels: filters per block (64 in the papers; fewer make CPU tiers faster).
    downsample: "pool" (28 -> 14 -> 7 -> 3 -> 1 pixels) or "stride" (28 -> 14 -> 7 -> 4 -> 2 pixels,
        averaged), see `_block`. Either way the features are `channels` numbers per image.

    forward(x: float (B, 1, 28, 28), head=True) -> logits (B, n_way), or features (B, channels) when
    `head=False` or there is no head.
    """

    def __init__(self, n_way: int | None = 5, channels: int = 64, in_channels: int = 1, downsample: str = "pool"):
        super().__init__()
        if n_way is not None and n_way < 2:
            raise ValueError(f"n_way must be at least 2 classes (or None for a feature extractor), got {n_way}.")
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}.")
        if downsample not in DOWNSAMPLING:
            raise ValueError(f"downsample must be one of {DOWNSAMPLING}, got {downsample!r}.")
        self.n_way, self.channels, self.downsample = n_way, channels, downsample
        self.encoder = nn.Sequential(*[_block(in_channels if i == 0 else channels, channels, downsample)
                                       for i in range(4)])
        self.head = nn.Linear(channels, n_way) if n_way is not None else None

    def forward(self, x: torch.Tensor, head: bool = True) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"Conv4 expects images of shape (B, C, H, W), got {tuple(x.shape)}.")
        h = self.encoder(x).mean(dim=(2, 3))  # (B, channels): 1x1 pixels after pooling, 2x2 after strides
        return self.head(h) if head and self.head is not None else h


class SinusoidMLP(nn.Module):
    """The regression network of the MAML paper: 1 -> 40 -> 40 -> 1 with ReLU.

    forward(x: float (B, 1)) -> float (B, 1); `head=False` returns the 40 hidden features.
    """

    def __init__(self, hidden: int = 40):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, head: bool = True) -> torch.Tensor:
        if x.dim() != 2 or x.shape[-1] != 1:
            raise ValueError(f"SinusoidMLP expects inputs of shape (B, 1), got {tuple(x.shape)}.")
        h = self.body(x)  # (B, hidden)
        return self.head(h) if head else h


__all__ = ["BatchStatNorm2d", "DOWNSAMPLING", "Conv4", "SinusoidMLP"]
