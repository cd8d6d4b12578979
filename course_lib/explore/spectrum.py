"""The collapse explorer of notebook 08: the singular values of the projections across training, run by run.

    runs = {"SimCLR": [(0, s0), (50, s1), ...], "alignment only": [...], "SimSiam": [...]}  # s = spectrum(z)
    explorer = SpectrumExplorer(runs)  # in Jupyter: a slider over training, two panels and a status line
    explorer.set(0.5)                  # what the slider does: halfway through each run's training

A snapshot is (training step, (k,) singular values of the L2-normalised projections z of a fixed batch,
largest first), as `contrastive.collapse.spectrum(z)` returns them. Left panel: each run's spectrum at
the slider's position, normalised to sum 1 on a log axis: a collapsed run puts all its mass on the first
value and the rest drops by orders of magnitude, a healthy one decays slowly. Right panel: each run's
effective rank over training, a marker where the slider is. `spectrum_figure` draws the same figure
without ipywidgets; the explorer displays like every explorer (`figures.LiveFigure`).
"""

from __future__ import annotations

import html
from typing import Mapping, NamedTuple, Sequence

import torch

from course_lib.contrastive.collapse import effective_rank
from course_lib.explore.figures import DPI, LiveFigure, show_figure

Snapshot = tuple[int, torch.Tensor]  # (training step, (k,) singular values, largest first)

COLLAPSED_BELOW = 2.0  # effective rank: under 2 directions the batch is a point or a line, whatever k is
FLOOR = 1e-6           # drawn in place of smaller shares: float32 SVD noise sits near 1e-7 of the total


class SpectrumPoint(NamedTuple):
    step: int                 # the training step of the snapshot shown
    spectrum: torch.Tensor    # (k,) float32 singular values / their sum: shares that add up to 1
    effective_rank: float     # exp(entropy of `spectrum`): 1 when collapsed, k when flat


def check_runs(runs: Mapping[str, Sequence[Snapshot]]) -> dict[str, list[Snapshot]]:
    """Validate runs {name: [(step, (k,) singular values), ...] in step order}; return them on the CPU, float32."""
    if not runs:
        raise ValueError("runs is empty: pass {name: [(step, spectrum(z)), ...]}, e.g. {'SimCLR': snapshots}.")
    checked = {}
    for name, snapshots in runs.items():
        if len(snapshots) == 0:
            raise ValueError(f"run {name!r} has no snapshots: record at least one (step, spectrum(z)) before plotting.")
        checked[str(name)] = pairs = []
        for i, snapshot in enumerate(snapshots):
            if len(snapshot) != 2:
                raise ValueError(f"run {name!r}, snapshot {i}: expected a pair (step, singular values), got "
                                 f"{len(snapshot)} items.")
            step, s = int(snapshot[0]), torch.as_tensor(snapshot[1]).detach().cpu().float()
            if s.dim() != 1 or s.numel() == 0:
                raise ValueError(f"run {name!r}, step {step}: expected a non-empty 1-D tensor of singular values "
                                 f"(k,), got shape {tuple(s.shape)}. Record spectrum(z) of the (N, D) projections.")
            if not torch.isfinite(s).all() or (s < 0).any():
                raise ValueError(f"run {name!r}, step {step}: singular values must be finite and >= 0; "
                                 "NaN means the run diverged (lower the learning rate).")
            if pairs and step <= pairs[-1][0]:
                raise ValueError(f"run {name!r}: steps must increase, got step {step} after step {pairs[-1][0]} "
                                 f"(snapshot {i}). Pass the snapshots in the order they were recorded.")
            pairs.append((step, s))
    return checked


def check_progress(progress: float) -> float:
    """`progress` as a float, or a readable error unless it is a fraction of training in [0, 1]."""
    if not 0.0 <= float(progress) <= 1.0:
        raise ValueError(f"progress is a fraction of training in [0, 1] (0.5: halfway), got {progress}.")
    return float(progress)


def progress_index(steps: Sequence[int], progress: float) -> int:
    """Which snapshot stands for `progress` in [0, 1]: the one whose step is nearest first + progress * span."""
    progress = check_progress(progress)
    first, span = steps[0], steps[-1] - steps[0]
    target = first + progress * span
    return min(range(len(steps)), key=lambda i: abs(steps[i] - target))  # a tie goes to the earlier snapshot


def normalise(singular_values: torch.Tensor) -> torch.Tensor:
    """(k,) singular values -> (k,) shares summing to 1 (all zeros, nothing to share: all on the first)."""
    total = singular_values.sum()
    if total == 0:
        return torch.nn.functional.one_hot(torch.tensor(0), len(singular_values)).float()
    return singular_values / total


def spectrum_at(runs: Mapping[str, Sequence[Snapshot]], progress: float) -> dict[str, SpectrumPoint]:
    """Each run's snapshot at `progress` (a fraction of its own training, see `progress_index`)."""
    points = {}
    for name, snapshots in check_runs(runs).items():
        step, s = snapshots[progress_index([st for st, _ in snapshots], progress)]
        points[name] = SpectrumPoint(step, normalise(s), effective_rank(s))
    return points


def rank_curves(runs: Mapping[str, Sequence[Snapshot]]) -> dict[str, tuple[list[int], list[float]]]:
    """Each run's effective rank over training: {name: (steps, effective ranks)}, one entry per snapshot."""
    return {name: ([st for st, _ in snaps], [effective_rank(s) for _, s in snaps])
            for name, snaps in check_runs(runs).items()}


def status_text(points: Mapping[str, SpectrumPoint]) -> str:
    """One HTML line: per run, the step shown, its effective rank of k, and whether it looks collapsed."""
    parts = []
    for name, p in points.items():
        verdict = "<b>collapsed</b>" if p.effective_rank < COLLAPSED_BELOW else "not collapsed"
        parts.append(f"<b>{html.escape(name)}</b> at step {p.step}: effective rank {p.effective_rank:.3g} of "
                     f"{len(p.spectrum)}, {verdict}")
    return "; ".join(parts) + f" (collapsed: effective rank below {COLLAPSED_BELOW:g})."


def plot_spectra(axes, runs: Mapping[str, Sequence[Snapshot]], progress: float) -> dict[str, SpectrumPoint]:
    """Draw, on two matplotlib axes, the spectra at `progress` and the effective ranks over training."""
    points, curves = spectrum_at(runs, progress), rank_curves(runs)
    left, right = axes
    for i, (name, p) in enumerate(points.items()):
        colour = f"C{i % 10}"
        shares = p.spectrum.clamp_min(FLOOR).numpy()
        left.plot(range(1, len(shares) + 1), shares, ".-", color=colour,
                  label=f"{name} (step {p.step}): effective rank {p.effective_rank:.3g}")
        steps, ranks = curves[name]
        right.plot(steps, ranks, "-", color=colour, label=name)
        right.plot([p.step], [p.effective_rank], "o", color=colour, markersize=9, markeredgecolor="black")
    left.set(yscale="log", ylim=(FLOOR / 2, 1.5), xlabel="singular value, largest first",
             ylabel=f"share of the sum (below {FLOOR:g} drawn at {FLOOR:g})",
             title=f"spectrum of z at {progress:.0%} of training")
    left.legend(fontsize=8)
    right.axhline(COLLAPSED_BELOW, color="gray", ls="--", lw=1, label=f"collapsed below {COLLAPSED_BELOW:g}")
    right.set(ylim=(0, None), xlabel="training step", ylabel="effective rank",
              title="effective rank over training (\u25cf: the slider's position)")
    right.legend(fontsize=8)
    return points


def spectrum_figure(runs: Mapping[str, Sequence[Snapshot]], progress: float = 1.0, figure=None):
    """A matplotlib Figure of the two panels of `plot_spectra` (no ipywidgets needed); `figure` to draw into."""
    from matplotlib.figure import Figure

    fig = figure if figure is not None else Figure(figsize=(12, 4.2), dpi=DPI)
    fig.clear()
    plot_spectra(fig.subplots(1, 2), runs, progress)
    fig.tight_layout()
    return fig


def show_spectra(runs: Mapping[str, Sequence[Snapshot]], progress: float = 1.0) -> None:
    """Draw and display `spectrum_figure` on its own, as a plain image."""
    show_figure(spectrum_figure(runs, progress))


class SpectrumExplorer(LiveFigure):
    """The two panels of `plot_spectra` and a status line, with one slider over training.

    runs: {name: [(step, (k,) singular values), ...]} in step order; runs may differ in length, steps and k.
    The slider is a fraction of training, not a step: runs of different lengths (SimSiam trained longer
    than the collapsing run, say) are compared at the same stage of each, and each run shows its
    snapshot whose step is nearest first + fraction * (last - first). Its stops are 1 / (P - 1) apart,
    P the most snapshots of any run, so where every run records at the same evenly spaced steps each
    stop is exactly one snapshot. progress: where the slider starts (default 1.0, the end of training).
    State: `progress`, `points` ({name: SpectrumPoint}); `status` is the HTML line above the figure.
    """

    def __init__(self, runs: Mapping[str, Sequence[Snapshot]], progress: float = 1.0):
        import ipywidgets as W

        self.runs = check_runs(runs)
        self.progress = check_progress(progress)
        self.points = spectrum_at(self.runs, self.progress)
        most = max(len(snaps) for snaps in self.runs.values())
        self.slider = W.FloatSlider(value=self.progress, min=0.0, max=1.0, step=1 / max(most - 1, 1),
                                    description="training", readout_format=".0%", continuous_update=False)
        self.slider.observe(lambda ch: self._on_slider(ch["new"]), names="value")
        self.status = W.HTML(status_text(self.points))
        self._init_display([self.slider, self.status], figsize=(12, 4.2))

    def set(self, progress: float) -> None:
        """Move the slider to `progress` in [0, 1] (what a learner does), which redraws the panels."""
        self.slider.value = check_progress(progress)

    def _on_slider(self, progress: float) -> None:
        self.progress = float(progress)
        self.points = spectrum_at(self.runs, self.progress)
        self.status.value = status_text(self.points)
        self.refresh()

    def draw(self):
        """The spectra at `progress` and the effective ranks over training, drawn into `figure`."""
        return spectrum_figure(self.runs, self.progress, figure=self.figure)

    def show(self, progress: float | None = None) -> None:
        """Display the figure at `progress` (default: the slider's) as a plain image: a snapshot."""
        if progress is not None:
            self.set(progress)
        super().show()


__all__ = ["COLLAPSED_BELOW", "Snapshot", "SpectrumExplorer", "SpectrumPoint", "check_progress", "check_runs", "normalise",
           "plot_spectra", "progress_index", "rank_curves", "show_spectra", "spectrum_at", "spectrum_figure",
           "status_text"]
