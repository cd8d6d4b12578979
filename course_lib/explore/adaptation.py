"""The adaptation explorer of notebook 05: how each model fits a new sinusoid after a few inner steps.

    explorer = AdaptationExplorer({"MAML": maml_model, "pretrained": baseline}, inner_lr=0.01)
    explorer                          # in Jupyter: sliders over inner steps and shots K, and the figure
    explorer.set(inner_steps=5)       # what the sliders do

One task is drawn once (seeded) with `max_shots` support points; K shots are the first K of them, so
moving the K slider adds points to the same task. Each model adapts a copy of its parameters with
`meta.sinusoid.fit_curve` (first-order SGD, as at meta-test time); the models themselves never change.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.explore.figures import LiveFigure
from course_lib.meta.sinusoid import X_RANGE, fit_curve, sample_sinusoids


def plot_adaptation(models: dict[str, nn.Module], *, amplitude: float, phase: float, x_support: torch.Tensor,
                    inner_lr: float, inner_steps: int, ax=None):
    """Plot the true sinusoid, the K support points x_support (K, 1) and each model's fit after `inner_steps`.

    ax: a matplotlib Axes (default: a new pyplot figure). Returns the Axes.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.subplots(figsize=(7, 3.5))[1]
    grid = torch.linspace(*X_RANGE, 200, device=x_support.device).unsqueeze(1)  # (200, 1)
    y_support = amplitude * torch.sin(x_support - phase)  # (K, 1)
    ax.plot(grid.cpu(), (amplitude * torch.sin(grid - phase)).cpu(), "k--", lw=1, label="true task")
    ax.scatter(x_support.cpu(), y_support.cpu(), c="k", zorder=3, label=f"K = {len(x_support)} support points")
    for name, model in models.items():
        pred = fit_curve(model, x_support, y_support, inner_lr=inner_lr, inner_steps=inner_steps, grid=grid)
        ax.plot(grid.cpu(), pred.cpu(), label=f"{name}, {inner_steps} step(s)")
    ax.set(xlabel="x", ylabel="y", ylim=(-6, 6))
    ax.legend(loc="upper right", fontsize=8)
    return ax


class AdaptationExplorer(LiveFigure):
    """Each model's fit to one new sinusoid, with sliders over inner steps (0 = unadapted) and shots K.

    models: {name: model mapping (B, 1) -> (B, 1)}, all on one device; inner_lr: the inner SGD step size;
    inner_steps and shots: where the sliders start (default 1 step on 10 shots, or max_shots if fewer).
    State: `inner_steps`, `shots`; the task: `amplitude`, `phase`, `x_pool` (max_shots, 1).
    """

    def __init__(self, models: dict[str, nn.Module], *, inner_lr: float, max_steps: int = 10, max_shots: int = 20,
                 inner_steps: int = 1, shots: int | None = None, seed: int = 0):
        import ipywidgets as W

        shots = min(10, max_shots) if shots is None else shots  # K = 10, the MAML paper's
        if not models:
            raise ValueError("models is empty: pass {name: model}, e.g. {'MAML': maml_model}.")
        if not (0 <= inner_steps <= max_steps and 1 <= shots <= max_shots):
            raise ValueError(f"need 0 <= inner_steps <= max_steps and 1 <= shots <= max_shots, got inner_steps="
                             f"{inner_steps}, max_steps={max_steps}, shots={shots}, max_shots={max_shots}.")
        self.models, self.inner_lr = models, inner_lr
        self.inner_steps, self.shots = inner_steps, shots
        device = next(next(iter(models.values())).parameters()).device
        tasks, amp, phase = sample_sinusoids(1, max_shots, 1, torch.Generator().manual_seed(seed), device)
        self.amplitude, self.phase = amp.item(), phase.item()
        self.x_pool = tasks.x_support[0]  # (max_shots, 1): the first `shots` of them are the support set
        self.steps_slider = W.IntSlider(value=inner_steps, min=0, max=max_steps, description="inner steps",
                                        continuous_update=False)
        self.shots_slider = W.IntSlider(value=shots, min=1, max=max_shots, description="shots K",
                                        continuous_update=False)
        self.steps_slider.observe(lambda ch: self._on_change(inner_steps=ch["new"]), names="value")
        self.shots_slider.observe(lambda ch: self._on_change(shots=ch["new"]), names="value")
        self._init_display([W.HBox([self.steps_slider, self.shots_slider])], figsize=(7, 3.5))

    def set(self, inner_steps: int | None = None, shots: int | None = None) -> None:
        """Move the sliders (what a learner does), which redraws the fits."""
        if inner_steps is not None:
            self.steps_slider.value = inner_steps
        if shots is not None:
            self.shots_slider.value = shots

    def _on_change(self, **state) -> None:
        for name, value in state.items():
            setattr(self, name, int(value))
        self.refresh()

    def draw(self):
        """The true curve, the support points and each model's fit, drawn into `figure`."""
        self.figure.clear()
        plot_adaptation(self.models, amplitude=self.amplitude, phase=self.phase, x_support=self.x_pool[:self.shots],
                        inner_lr=self.inner_lr, inner_steps=self.inner_steps, ax=self.figure.add_subplot())
        self.figure.tight_layout()
        return self.figure


__all__ = ["AdaptationExplorer", "plot_adaptation"]
