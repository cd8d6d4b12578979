"""The experiments of notebook 08 (beyond SimCLR): their plan per tier, the collapse monitor, seed intervals, plots.

    plan = pick(PLANS)
    monitor = CollapseMonitor(model, test_images, plan.base.views)
    history = train_simclr(model, images, cfg, labels, test_images, test_labels, metrics=monitor)
    monitor.snapshots(history)            # [(step, singular values)] for `explore.spectrum.SpectrumExplorer`
    seed_interval([0.41, 0.43, 0.40])     # (mean, half-width of its 95% Student-t interval)

Every run goes through `train_simclr` with `SimCLRConfig.method` set: one data pipeline, one network,
one optimiser recipe, one training run, so that the methods differ only in their loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import torch
from torch import nn

from course_lib.contrastive.collapse import collapse_metrics, spectrum
from course_lib.contrastive.simclr import PRESETS, SimCLRConfig
from course_lib.contrastive.views import ViewConfig, simclr_views
from course_lib.training import History


@dataclass(frozen=True)
class BeyondPlan:
    """What notebook 08 runs in a tier. Every run starts from `base` (data, network, optimiser, views)."""

    base: SimCLRConfig
    compare_s: float                   # seconds of training of each run in MoCo vs SimCLR (equal wall-clock)
    small_batch: int                   # images per step of MoCo and of the small-batch SimCLR
    queue_size: int                    # MoCo's negatives (a multiple of 2 x small_batch)
    key_momentum: float                # MoCo's EMA
    temperatures: tuple[float, ...]    # the ablation grid ...
    batches: tuple[int, ...]           # ... temperature x batch size
    grid_epochs: int                   # epochs of each grid run (equal epochs: equal images seen)
    collapse_epochs: int               # epochs of the collapse runs, monitored after each one
    mix_seeds: tuple[int, ...]         # seeds of each arm of the Mixup / CutMix comparison
    mix_epochs: int


PLANS = {
    # CI: about 2 minutes on 2 CPU cores (2,000 images at 16 px, the small CNN; measured in the notebook's table).
    "smoke": BeyondPlan(
        base=replace(PRESETS["smoke"], epochs=1000, budget_s=None, knn_every=0), compare_s=10.0, small_batch=64,
        queue_size=1024, key_momentum=0.99, temperatures=(0.1, 0.2, 0.5), batches=(64, 256), grid_epochs=3,
        collapse_epochs=6, mix_seeds=(0, 1, 2), mix_epochs=4),
    # A CPU: about 20 minutes on 2 cores (10,000 images at 16 px, the small CNN of width 32).
    "laptop": BeyondPlan(
        base=replace(PRESETS["laptop"], epochs=1000, budget_s=None, knn_every=0, live_plot=False), compare_s=200.0,
        small_batch=64, queue_size=4096, key_momentum=0.99, temperatures=(0.1, 0.2, 0.5), batches=(64, 256),
        grid_epochs=2, collapse_epochs=3, mix_seeds=(0, 1, 2), mix_epochs=2),
    # A GPU: ResNet-18 on all of CIFAR-10, bf16; unmeasured (no GPU run yet), about 40 minutes planned.
    "full": BeyondPlan(
        base=replace(PRESETS["full"], epochs=1000, budget_s=None, knn_every=0, live_plot=False), compare_s=600.0,
        small_batch=256, queue_size=8192, key_momentum=0.99, temperatures=(0.1, 0.2, 0.5), batches=(256, 1024),
        grid_epochs=5, collapse_epochs=5, mix_seeds=(0, 1, 2), mix_epochs=5),
}


class CollapseMonitor:
    """`collapse_metrics` of two fixed views of `n` images, for `train_simclr(..., metrics=monitor)`.

    The views are drawn once (seeded), so every check sees the same inputs; the model is put in eval mode
    for the check (BatchNorm's running statistics, as features are used) and back in its mode after. Each
    call also keeps the spectrum of z, for the explorer.
    """

    def __init__(self, model: nn.Module, images: torch.Tensor, views: ViewConfig, n: int = 256, seed: int = 0):
        dev = next(model.parameters()).device
        gen = torch.Generator(device=dev).manual_seed(seed)
        x = images[:n].to(dev)                                        # (n, 3, H, W) uint8
        self.model = model
        self.views = simclr_views(x, views, gen), simclr_views(x, views, gen)   # two (n, 3, S, S)
        self.spectra: list[torch.Tensor] = []

    @torch.no_grad()
    def __call__(self) -> dict[str, float]:
        training = self.model.training
        self.model.eval()
        try:
            z1, z2 = (self.model(v)[1].float() for v in self.views)
        finally:
            self.model.train(training)
        self.spectra.append(spectrum(z1).cpu())
        return collapse_metrics(z1, z2)

    def snapshots(self, history: History) -> list[tuple[int, torch.Tensor]]:
        """(step, singular values) of each check of this monitor, paired with the history's evaluations."""
        steps = [e["step"] for e in history.evals if "effective_rank" in e][-len(self.spectra):]
        return list(zip(steps, self.spectra[-len(steps):])) if steps else []


def seed_interval(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width) of the 95% Student-t interval of the mean of a few runs (n >= 2).

    With 3 seeds the t quantile is 4.30, not the normal 1.96: a few runs give a wide interval, honestly.
    """
    from scipy.stats import t  # scikit-learn's dependency

    x = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if len(x) < 2:
        raise ValueError(f"an interval over seeds needs at least 2 runs, got {len(x)}.")
    return x.mean().item(), t.ppf(0.975, len(x) - 1) * x.std().item() / math.sqrt(len(x))


def plot_collapse(histories: Mapping[str, History], metrics=("alignment", "uniformity", "effective_rank")):
    """One panel per metric of `CollapseMonitor`, one line per run, against the training step. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    for ax, metric in zip(axes, metrics):
        for name, history in histories.items():
            ax.plot(*history.curve(metric), "o-", ms=3, label=name)
        ax.set(xlabel="step", title=metric.replace("_", " "))
    axes[0].legend()
    fig.tight_layout()
    return fig


def plot_grid(accuracy: Mapping[tuple[float, int], float], temperatures: Sequence[float], batches: Sequence[int]):
    """Heatmap of kNN accuracy over (temperature, batch size), each cell labelled. Returns the figure."""
    import matplotlib.pyplot as plt

    values = [[100 * accuracy[(t, b)] for b in batches] for t in temperatures]
    fig, ax = plt.subplots(figsize=(1.6 * len(batches) + 2.5, 0.7 * len(temperatures) + 1.8))
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="white" if v < max(map(max, values)) - 1 else "k")
    ax.set(xticks=range(len(batches)), xticklabels=batches, yticks=range(len(temperatures)),
           yticklabels=temperatures, xlabel="batch size (images)", ylabel="temperature", title="kNN top-1 (%)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


__all__ = ["BeyondPlan", "PLANS", "CollapseMonitor", "seed_interval", "plot_collapse", "plot_grid"]
