"""The views explorer of notebook 02: turn each SimCLR augmentation on or off, set its strength, resample.

    explorer = ViewExplorer(images[:8])     # in Jupyter: controls + a grid of view pairs
    explorer.set(color=False)               # what the checkboxes and sliders do
    explorer.resample()                     # what the button does: new random views

`view_pairs_figure` draws the grid (row 0 the images, rows 1 and 2 two independent views of each) and
`show_view_pairs` displays it on its own. The explorer displays like every explorer (`figures.LiveFigure`):
live controls in Jupyter, the same figure as a PNG where no frontend runs.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from course_lib.contrastive.views import ViewConfig, simclr_views
from course_lib.explore.figures import DPI, LiveFigure, image_array, show_figure


def view_pairs_figure(images: torch.Tensor, config: ViewConfig = ViewConfig(), seed: int = 0, impl: str = "fused",
                      figure=None, titles: list[str] | None = None):
    """A matplotlib Figure: the images (n, 3, H, W) on top, two independent views of each below."""
    from matplotlib.figure import Figure

    gen = torch.Generator().manual_seed(seed)
    rows = [images, simclr_views(images, config, gen, impl=impl), simclr_views(images, config, gen, impl=impl)]
    n = len(images)
    fig = figure if figure is not None else Figure(figsize=(1.3 * n, 4.2), dpi=DPI)
    fig.clear()
    axes = fig.subplots(3, n, squeeze=False)
    for r, (row, name) in enumerate(zip(rows, ("image", "view 1", "view 2"))):
        for c, img in enumerate(image_array(row)):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            if r == 0 and titles is not None:
                ax.set_title(titles[c], fontsize=8)
    fig.tight_layout()
    return fig


def show_view_pairs(images: torch.Tensor, config: ViewConfig = ViewConfig(), seed: int = 0,
                    titles: list[str] | None = None) -> None:
    """Draw and display `view_pairs_figure` (the images and two views of each)."""
    show_figure(view_pairs_figure(images, config, seed, titles=titles))


class ViewExplorer(LiveFigure):
    """Controls for each augmentation of a ViewConfig and a grid of view pairs that follows them.

    images: (n, 3, H, W) uint8 or float in [0, 1], a handful (8 reads well). State: `config`, `seed`.
    """

    SLIDERS = {  # ViewConfig field: (label, min, max, step)
        "min_scale": ("min crop area", 0.02, 1.0, 0.02),
        "flip_p": ("flip prob.", 0.0, 1.0, 0.05),
        "strength": ("colour strength", 0.0, 2.0, 0.1),
        "jitter_p": ("jitter prob.", 0.0, 1.0, 0.05),
        "gray_p": ("gray prob.", 0.0, 1.0, 0.05),
    }
    SWITCHES = ("crop", "flip", "color", "gray")

    def __init__(self, images: torch.Tensor, config: ViewConfig = ViewConfig(), seed: int = 0,
                 titles: list[str] | None = None):
        if images.ndim != 4 or images.shape[1] != 3 or not 1 <= len(images) <= 16:
            raise ValueError(f"expected 1 to 16 images (n, 3, H, W), got {tuple(images.shape)}; pass e.g. images[:8].")
        self.images, self.config, self.seed, self.titles = images, config, seed, titles
        self._build_widgets()

    def _value(self, name: str) -> float:
        return self.config.scale[0] if name == "min_scale" else getattr(self.config, name)

    def _build_widgets(self) -> None:
        import ipywidgets as W

        self.switches = {n: W.Checkbox(value=getattr(self.config, n), description=n, indent=False) for n in self.SWITCHES}
        self.sliders = {n: W.FloatSlider(value=self._value(n), min=lo, max=hi, step=step, description=label,
                                         continuous_update=False, style={"description_width": "initial"})
                        for n, (label, lo, hi, step) in self.SLIDERS.items()}
        self.button = W.Button(description="resample", icon="refresh")
        for name, box in self.switches.items():
            box.observe(lambda ch, name=name: self.set(**{name: ch["new"]}), names="value")
        for name, slider in self.sliders.items():
            slider.observe(lambda ch, name=name: self.set(**{name: ch["new"]}), names="value")
        self.button.on_click(lambda _: self.resample())
        sliders = list(self.sliders.values())
        controls = [W.HBox(list(self.switches.values()) + [self.button]), W.HBox(sliders[:3]), W.HBox(sliders[3:])]
        self._init_display(controls, figsize=(1.3 * len(self.images), 4.2))

    def set(self, **changes) -> ViewConfig:
        """Change config fields (and `min_scale`, the crop's smallest area) and redraw; returns the new config."""
        if "min_scale" in changes:
            changes["scale"] = (float(changes.pop("min_scale")), self.config.scale[1])
        self.config = replace(self.config, **changes)
        self.refresh()
        return self.config

    def resample(self) -> None:
        """New random views with the same settings."""
        self.seed += 1
        self.refresh()

    def draw(self):
        """The grid for the current config and seed, drawn into `figure`."""
        return view_pairs_figure(self.images, self.config, self.seed, figure=self.figure, titles=self.titles)


__all__ = ["ViewExplorer", "show_view_pairs", "view_pairs_figure"]
