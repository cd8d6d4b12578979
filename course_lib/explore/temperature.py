"""What the temperature does to a contrastive loss: the softmax over candidates and the weight on hard negatives.

For one anchor with positive similarity s_p and negative similarities s_1..s_K (cosines in [-1, 1]),
the loss is  -log softmax(s / t)[positive], and its gradient w.r.t. a negative's similarity is

    dL/ds_k = p_k / t,        p = softmax([s_p, s_1, ..., s_K] / t)

so each negative is pushed away with a weight proportional to p_k: a small t concentrates almost all
the weight on the few negatives most similar to the anchor (the hard negatives), a large t spreads it
evenly (Wang & Liu, 2021). `temperature_stats` computes these numbers; `TemperatureExplorer` draws
them for a few temperatures side by side, one row and one slider each (a live figure like every
explorer's, see `figures.LiveFigure`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from course_lib.contrastive.losses import validate_temperature
from course_lib.explore.figures import LiveFigure

T_DIGITS = 3  # significant digits of a temperature, in the sliders' readouts and the figure's titles alike
T_READOUT = f".{T_DIGITS}g"  # the sliders' d3 format, JavaScript's toPrecision: it keeps trailing zeros


def format_temperature(temperature: float) -> str:
    """A temperature as the sliders' readout shows it: 0.223872 -> "0.224", 0.05 -> "0.0500".

    Python's "#g" keeps trailing zeros as d3's "g" does (ipywidgets rejects d3's "~", which would drop them).
    """
    return f"{temperature:#.{T_DIGITS}g}"


@dataclass(frozen=True)
class TemperatureStats:
    probs: torch.Tensor          # (K + 1,) softmax over [positive, negatives]; sums to 1
    neg_weights: torch.Tensor    # (K,) dL/ds_k = p_k / t, the push on each negative
    loss: float                  # -log probs[0], nats
    hard_share: float            # fraction of the total push that lands on the hardest 10% of negatives
    effective_negatives: float   # 1 / sum q_k^2 with q the push normalised to sum 1: K when even, 1 when one negative gets it all


def example_similarities(n_negatives: int = 64, positive: float = 0.7, seed: int = 0) -> tuple[float, torch.Tensor]:
    """A typical anchor: one positive and `n_negatives` negatives, a few of them hard (similar to the anchor).

    Returns (positive similarity, (K,) float32 negative similarities sorted in decreasing order).
    """
    gen = torch.Generator().manual_seed(seed)
    easy = torch.empty(n_negatives - n_negatives // 8).uniform_(-0.4, 0.4, generator=gen)
    hard = torch.empty(n_negatives // 8).uniform_(0.45, 0.65, generator=gen)
    return positive, torch.cat([hard, easy]).sort(descending=True).values


def temperature_stats(positive: float, negatives: torch.Tensor, temperature: float) -> TemperatureStats:
    """Softmax over the candidates and the push on each negative, for one anchor.

    positive: the positive's similarity; negatives: (K,) float similarities, K >= 1. Computed in
    float64 on negatives' device; the tensors in the result are float32.
    """
    temperature = validate_temperature(temperature)
    if negatives.dim() != 1 or len(negatives) == 0:
        raise ValueError(f"negatives must be a 1-D tensor of K >= 1 similarities, got shape {tuple(negatives.shape)}.")
    sims = torch.cat([negatives.new_tensor([positive]), negatives]).double()  # (K + 1,)
    probs = torch.softmax(sims / temperature, dim=0)                            # stable: softmax subtracts the max
    neg_weights = probs[1:] / temperature                                        # (K,)
    q = neg_weights / neg_weights.sum()
    n_hard = max(1, math.ceil(0.1 * len(negatives)))
    return TemperatureStats(
        probs=probs.float(),
        neg_weights=neg_weights.float(),
        loss=float(-torch.log_softmax(sims / temperature, dim=0)[0]),
        hard_share=float(q.sort(descending=True).values[:n_hard].sum()),
        effective_negatives=float(1.0 / (q * q).sum()),
    )


def plot_temperature(axes, positive: float, negatives: torch.Tensor, temperature: float) -> TemperatureStats:
    """Draw, on two matplotlib axes, the softmax over candidates and the relative push on each negative."""
    negatives = negatives.detach().cpu()  # matplotlib reads NumPy arrays, which live on the host
    stats = temperature_stats(positive, negatives, temperature)
    k = len(negatives)
    left, right = axes
    left.bar(range(1, k + 1), stats.probs[1:].numpy(), color="tab:gray", label="negatives")
    left.bar([0], stats.probs[:1].numpy(), color="tab:green", label=f"positive (s={positive:.2f})")
    left.set(title=f"t = {format_temperature(temperature)}: softmax over candidates, loss {stats.loss:.2f} nats",
             xlabel="candidate (negatives sorted, hardest first)", ylabel="probability")
    left.legend(fontsize=8)
    rel = (stats.neg_weights / stats.neg_weights.mean()).numpy()
    right.scatter(negatives.numpy(), rel, s=12, color="tab:red")
    right.axhline(1.0, color="k", lw=0.5)
    right.set(yscale="log", xlabel="similarity of the negative to the anchor", ylabel="push / mean push",
              title=f"hardest 10% get {stats.hard_share:.0%} of the push; effective negatives {stats.effective_negatives:.1f} of {k}")
    return stats


class TemperatureExplorer(LiveFigure):
    """The two panels of `plot_temperature` for a few temperatures, one row each, each with its slider.

    positive: the positive's similarity (default 0.7); negatives: (K,) similarities (default: the 64 of
    `example_similarities`). The rows start at `temperatures`, so the figure compares them where no
    kernel runs; in a live notebook each slider moves its row over t in [0.01, 2].
    State: `temperatures` (a tuple), `stats` (one TemperatureStats per row).
    """

    def __init__(self, positive: float | None = None, negatives: torch.Tensor | None = None,
                 temperatures: tuple[float, ...] = (0.05, 0.2, 1.0)):
        import ipywidgets as W

        positive = 0.7 if positive is None else positive
        if negatives is None:
            positive, negatives = example_similarities(positive=positive)
        if not temperatures:
            raise ValueError("temperatures is empty: pass at least one, e.g. (0.05, 0.2, 1.0).")
        self.positive, self.negatives = positive, negatives.detach().cpu()
        self.temperatures = tuple(validate_temperature(t) for t in temperatures)
        low, high = math.log10(min(0.01, *self.temperatures)), math.log10(max(2.0, *self.temperatures))
        self.sliders = [W.FloatLogSlider(value=t, base=10, min=low, max=high, step=0.05, description=f"row {i + 1}: t",
                                         readout_format=T_READOUT, continuous_update=False,
                                         style={"description_width": "initial"})
                        for i, t in enumerate(self.temperatures)]
        for i, slider in enumerate(self.sliders):
            slider.observe(lambda ch, i=i: self._on_slider(i, ch["new"]), names="value")
        self._init_display([W.HBox(self.sliders)], figsize=(12, 3.2 * len(self.temperatures)))

    @property
    def stats(self) -> list[TemperatureStats]:
        return [temperature_stats(self.positive, self.negatives, t) for t in self.temperatures]

    def set(self, row: int, temperature: float) -> None:
        """Move one row's slider to `temperature` (within the slider's range), which redraws that row."""
        temperature, slider = validate_temperature(temperature), self.sliders[row]
        if not slider.min <= math.log10(temperature) <= slider.max:
            raise ValueError(f"temperature {temperature:g} is outside the sliders' range "
                             f"[{10 ** slider.min:g}, {10 ** slider.max:g}]; pass it in `temperatures` to widen it.")
        slider.value = temperature

    def _on_slider(self, row: int, temperature: float) -> None:
        temperatures = list(self.temperatures)
        temperatures[row] = temperature
        self.temperatures = tuple(temperatures)
        self.refresh()

    def draw(self):
        """One row of two panels per temperature, drawn into `figure`."""
        fig = self.figure
        fig.clear()
        axes = fig.subplots(len(self.temperatures), 2, squeeze=False)
        for row, t in zip(axes, self.temperatures):
            plot_temperature(row, self.positive, self.negatives, t)
        fig.tight_layout()
        return fig


__all__ = ["TemperatureStats", "TemperatureExplorer", "example_similarities", "format_temperature", "temperature_stats",
           "plot_temperature"]
