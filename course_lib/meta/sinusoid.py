"""Sinusoid regression, the toy problem of the MAML paper, and the pretrained-on-all-tasks baseline.

A task is y = A sin(x - phase) with amplitude A ~ U[0.1, 5.0], phase ~ U[0, pi], inputs x ~ U[-5, 5];
a learner sees K = 5 or 10 points of a new task and must fit the whole curve. The baseline trains
one network on all tasks at once (it learns the average curve, which is flat) and fine-tunes on the
K points; MAML learns an initialisation from which a few SGD steps fit any sinusoid. `fit_curve`
predicts the whole curve after adaptation (drawn by `course_lib.explore.adaptation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from course_lib.data.episodes import Episodes
from course_lib.meta.core import MetaConfig, adapt, parameters
from course_lib.training import History, TrainingRun

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)


@dataclass(frozen=True)
class SinusoidConfig:
    """One tier's sinusoid experiment (the paper: K = 10, meta-batch 25, 70,000 steps)."""

    k_shot: int = 10  # support points per task
    n_query: int = 10  # query points per task
    maml: MetaConfig = field(default_factory=lambda: MetaConfig(
        method="maml", inner_lr=0.01, inner_steps=1, eval_inner_steps=10, meta_lr=1e-3, meta_batch=25,
        steps=70_000, loss="mse"))
    compare_steps: int = 300  # outer steps of each method in the order/time/memory comparison
    eval_tasks: int = 600
    max_mse: float = 0.5  # band asserted by notebook 05: MAML's query MSE after eval_inner_steps steps
    seed: int = 0


SINUSOID_PRESETS = {
    "smoke": SinusoidConfig(maml=MetaConfig(method="maml", inner_lr=0.01, inner_steps=1, eval_inner_steps=10,
                                            meta_lr=3e-3, meta_batch=25, steps=4000, loss="mse"),
                            compare_steps=500, eval_tasks=200, max_mse=0.6),
    "laptop": SinusoidConfig(maml=MetaConfig(method="maml", inner_lr=0.01, inner_steps=1, eval_inner_steps=10,
                                             meta_lr=2e-3, meta_batch=25, steps=30_000, loss="mse"),
                             compare_steps=2000, eval_tasks=600, max_mse=0.4),
    "full": SinusoidConfig(maml=MetaConfig(method="maml", inner_lr=0.01, inner_steps=1, eval_inner_steps=10,
                                           meta_lr=1e-3, meta_batch=25, steps=70_000, loss="mse"),
                           compare_steps=2000, eval_tasks=600, max_mse=0.5),
}


def sample_sinusoids(meta_batch: int, k_shot: int, n_query: int, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> tuple[Episodes, torch.Tensor, torch.Tensor]:
    """Draw `meta_batch` sinusoid tasks.

    Returns (Episodes with x_*: float (T, K or Q, 1), y_*: float (T, K or Q, 1),
             amplitude: (T,), phase: (T,)) so a plot can draw the true curve.
    """
    if k_shot < 1 or n_query < 1 or meta_batch < 1:
        raise ValueError(f"meta_batch, k_shot and n_query must be >= 1; got {meta_batch}, {k_shot}, {n_query}.")
    u = torch.rand(meta_batch, 2 + k_shot + n_query, generator=generator).to(device)
    amp = AMPLITUDE[0] + (AMPLITUDE[1] - AMPLITUDE[0]) * u[:, 0]  # (T,)
    phase = PHASE[0] + (PHASE[1] - PHASE[0]) * u[:, 1]  # (T,)
    x = (X_RANGE[0] + (X_RANGE[1] - X_RANGE[0]) * u[:, 2:]).unsqueeze(-1)  # (T, K+Q, 1)
    y = amp[:, None, None] * torch.sin(x - phase[:, None, None])
    return Episodes(x[:, :k_shot], y[:, :k_shot], x[:, k_shot:], y[:, k_shot:]), amp, phase


def sinusoid_sampler(k_shot: int, n_query: int, device: torch.device | str = "cpu"):
    """A function (meta_batch, generator) -> Episodes, for `meta_train` and `evaluate`."""
    return lambda meta_batch, generator: sample_sinusoids(meta_batch, k_shot, n_query, generator, device)[0]


def pretrain_baseline(model: nn.Module, steps: int, *, meta_batch: int = 25, k_shot: int = 10, lr: float = 1e-3,
                      generator: torch.Generator | None = None, progress: bool = True) -> History:
    """The baseline: ordinary regression on points pooled from many tasks (no adaptation while training).

    Trains `model` in place with Adam on MSE over meta_batch * k_shot points a step, through the kit's
    one training run; returns its History (the loss of every step in history.losses).
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    device = next(model.parameters()).device

    def step(s: int) -> dict[str, torch.Tensor]:
        tasks, _, _ = sample_sinusoids(meta_batch, k_shot, 1, generator, device)
        loss = nn.functional.mse_loss(model(tasks.x_support.reshape(-1, 1)), tasks.y_support.reshape(-1, 1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    run = TrainingRun(step, model=model, optimizer=optimizer, generators=[generator] if generator is not None else [],
                      steps=steps, lr=lambda s, total: lr, kind="baseline", progress=progress, desc="baseline")
    return run.train()


def fit_curve(model: nn.Module, x_support: torch.Tensor, y_support: torch.Tensor, *, inner_lr: float,
              inner_steps: int, grid: torch.Tensor) -> torch.Tensor:
    """Adapt a copy of model's parameters on (x_support (K, 1), y_support (K, 1)) and predict on grid (G, 1).

    inner_steps = 0 returns the unadapted prediction. Returns float (G, 1), detached.
    """
    params = {k: p.detach() for k, p in parameters(model).items()}
    if inner_steps > 0:
        params = adapt(model, params, x_support, y_support, inner_lr=inner_lr, inner_steps=inner_steps,
                       first_order=True, loss="mse")
    with torch.no_grad():
        return functional_call(model, params, (grid,))


__all__ = ["AMPLITUDE", "PHASE", "X_RANGE", "SinusoidConfig", "SINUSOID_PRESETS", "sample_sinusoids",
           "sinusoid_sampler", "pretrain_baseline", "fit_curve"]
