"""Sinusoid regression, the toy problem of the MAML paper, and the pretrained-on-all-tasks baseline.

A task is y = A sin(x - phase) with amplitude A ~ U[0.1, 5.0], phase ~ U[0, pi], inputs x ~ U[-5, 5];
a learner sees K = 5 or 10 points of a new task and must fit the whole curve. The baseline trains
one network on all tasks at once (it learns the average curve, which is flat) and fine-tunes on the
K points; MAML learns an initialisation from which a few SGD steps fit any sinusoid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from course_lib.meta.core import MetaConfig, Tasks, adapt, parameters

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
                     device: torch.device | str = "cpu") -> tuple[Tasks, torch.Tensor, torch.Tensor]:
    """Draw `meta_batch` sinusoid tasks.

    Returns (Tasks with x_*: float (T, K or Q, 1), y_*: float (T, K or Q, 1),
             amplitude: (T,), phase: (T,)) so a plot can draw the true curve.
    """
    if k_shot < 1 or n_query < 1 or meta_batch < 1:
        raise ValueError(f"meta_batch, k_shot and n_query must be >= 1; got {meta_batch}, {k_shot}, {n_query}.")
    u = torch.rand(meta_batch, 2 + k_shot + n_query, generator=generator).to(device)
    amp = AMPLITUDE[0] + (AMPLITUDE[1] - AMPLITUDE[0]) * u[:, 0]  # (T,)
    phase = PHASE[0] + (PHASE[1] - PHASE[0]) * u[:, 1]  # (T,)
    x = (X_RANGE[0] + (X_RANGE[1] - X_RANGE[0]) * u[:, 2:]).unsqueeze(-1)  # (T, K+Q, 1)
    y = amp[:, None, None] * torch.sin(x - phase[:, None, None])
    return Tasks(x[:, :k_shot], y[:, :k_shot], x[:, k_shot:], y[:, k_shot:]), amp, phase


def sinusoid_sampler(k_shot: int, n_query: int, device: torch.device | str = "cpu"):
    """A function (meta_batch, generator) -> Tasks, for `meta_train` and `evaluate`."""
    return lambda meta_batch, generator: sample_sinusoids(meta_batch, k_shot, n_query, generator, device)[0]


def pretrain_baseline(model: nn.Module, steps: int, *, meta_batch: int = 25, k_shot: int = 10, lr: float = 1e-3,
                      generator: torch.Generator | None = None) -> list[float]:
    """The baseline: ordinary regression on points pooled from many tasks (no adaptation while training).

    Trains `model` in place with Adam on MSE over meta_batch * k_shot points per step; returns the losses.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    device = next(model.parameters()).device
    losses = []
    for _ in range(steps):
        tasks, _, _ = sample_sinusoids(meta_batch, k_shot, 1, generator, device)
        loss = nn.functional.mse_loss(model(tasks.x_support.reshape(-1, 1)), tasks.y_support.reshape(-1, 1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


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


def plot_adaptation(models: dict[str, nn.Module], *, amplitude: float, phase: float, x_support: torch.Tensor,
                    inner_lr: float, inner_steps: int, ax=None):
    """Plot the true sinusoid, the K support points and each model's fit after `inner_steps` steps."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.subplots(figsize=(7, 3.5))[1]
    device = x_support.device
    grid = torch.linspace(*X_RANGE, 200, device=device).unsqueeze(1)  # (200, 1)
    y_support = amplitude * torch.sin(x_support - phase)
    ax.plot(grid.cpu(), (amplitude * torch.sin(grid - phase)).cpu(), "k--", lw=1, label="true task")
    ax.scatter(x_support.cpu(), y_support.cpu(), c="k", zorder=3, label=f"K = {len(x_support)} support points")
    for name, model in models.items():
        pred = fit_curve(model, x_support, y_support, inner_lr=inner_lr, inner_steps=inner_steps, grid=grid)
        ax.plot(grid.cpu(), pred.cpu(), label=f"{name}, {inner_steps} step(s)")
    ax.set(xlabel="x", ylabel="y", ylim=(-6, 6))
    ax.legend(loc="upper right", fontsize=8)
    return ax


class AdaptationExplorer:
    """Adapt models to a new sinusoid, with sliders over inner steps and shots.

    `.show()` draws a static figure (what a notebook shows without a live kernel); displaying the
    object in Jupyter shows the live widget (ipywidgets is imported only then).
    """

    def __init__(self, models: dict[str, nn.Module], *, inner_lr: float, max_steps: int = 10, max_shots: int = 20,
                 seed: int = 0):
        self.models, self.inner_lr, self.max_steps, self.max_shots = models, inner_lr, max_steps, max_shots
        gen = torch.Generator().manual_seed(seed)
        device = next(next(iter(models.values())).parameters()).device
        tasks, amp, phase = sample_sinusoids(1, max_shots, 1, gen, device)
        self.amplitude, self.phase = amp.item(), phase.item()
        self.x_pool = tasks.x_support[0]  # (max_shots, 1): the first k of them are the support set

    def show(self, inner_steps: int = 1, shots: int = 10):
        import matplotlib.pyplot as plt

        plot_adaptation(self.models, amplitude=self.amplitude, phase=self.phase, x_support=self.x_pool[:shots],
                        inner_lr=self.inner_lr, inner_steps=inner_steps)
        plt.show()

    def widget(self):
        import ipywidgets as widgets

        steps = widgets.IntSlider(value=1, min=0, max=self.max_steps, description="inner steps")
        shots = widgets.IntSlider(value=10, min=1, max=self.max_shots, description="shots K")
        return widgets.VBox([widgets.HBox([steps, shots]),
                             widgets.interactive_output(lambda s, k: self.show(s, k), {"s": steps, "k": shots})])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget())


__all__ = ["AMPLITUDE", "PHASE", "X_RANGE", "SinusoidConfig", "SINUSOID_PRESETS", "sample_sinusoids",
           "sinusoid_sampler", "pretrain_baseline", "fit_curve", "plot_adaptation", "AdaptationExplorer"]
