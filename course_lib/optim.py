"""Optimisation: the LARS optimizer and the warmup + cosine learning-rate schedule.

Both are what the SimCLR paper trains with (Chen et al., 2020, appendix B.1): LARS lets large batches
train stably. The schedule (also MAML's cosine decay, without warmup) is a pure function of the step and
the run's planned length, so a resumed run picks up exactly the learning rate it would have had.
"""

from __future__ import annotations

import math

import torch


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017), as SimCLR uses it.

    For each weight tensor (ndim > 1) the step is scaled by eta ||w|| / ||g + wd w||, so every layer moves
    by about the same fraction of its norm whatever its gradient scale; this is what makes large batches
    trainable. Biases and BatchNorm parameters (ndim <= 1) get neither weight decay nor the scaling.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:  # the torch.optim contract: re-evaluate the loss, return it
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, 1.0)
                    g = g * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


def weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups that decay weights (ndim > 1) by `weight_decay` and leave biases and BatchNorm
    parameters (ndim <= 1) undecayed, the SimCLR convention; for any torch optimizer or LARS. Frozen
    parameters (requires_grad False) are left out."""
    trainable = [p for p in model.parameters() if p.requires_grad]   # not e.g. MoCo's key encoder
    decay = [p for p in trainable if p.ndim > 1]
    rest = [p for p in trainable if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Linear warmup from peak / warmup_steps to `peak`, then cosine decay to 0 at `total_steps`.

    A pure function of the step: with a time budget, `course_lib.training` plans `total_steps` from the
    measured speed once, so the decay still ends on the last step on any machine.
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


__all__ = ["LARS", "learning_rate", "weight_decay_groups"]
