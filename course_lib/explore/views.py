"""The views explorer of notebook 02: turn each SimCLR augmentation on or off, set its strength, resample.

    explorer = ViewExplorer(images[:8])     # in Jupyter: controls + a grid of view pairs
    explorer.set(color=False)               # what the checkboxes and sliders do
    explorer.resample()                     # what the button does: new random views

`view_pairs_figure` draws the grid (row 0 the images, rows 1 and 2 two independent views of each) and
is used on its own for static figures. ipywidgets and IPython are imported only when an explorer is
built or shown, so the library imports without them; without a live frontend the explorer still
renders its figure as a plain output, so the notebook reads well in CI.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from course_lib.contrastive.views import ViewConfig, simclr_views


@dataclass(frozen=True)
class ViewsLessonConfig:
    """Sizes of the measurements in notebook 02, per tier."""

    n_match: int  # test images in the colour-histogram matching experiment (chance = 1 / n_match)
    n_reference: int  # images sent through the per-image torchvision reference when timing it
    n_batched: int  # images sent through simclr_views when timing it
    n_stats: int  # crop boxes drawn by each pipeline to compare their distributions


VIEWS_LESSON_PRESETS = {
    "smoke": ViewsLessonConfig(n_match=512, n_reference=256, n_batched=4096, n_stats=2000),
    "laptop": ViewsLessonConfig(n_match=2000, n_reference=1000, n_batched=16384, n_stats=10000),
    "full": ViewsLessonConfig(n_match=10000, n_reference=2000, n_batched=65536, n_stats=20000),
}


def _to_display(x: torch.Tensor):
    """(B, 3, H, W) uint8 or float in [0, 1] -> (B, H, W, 3) float numpy for imshow."""
    x = x.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def view_pairs_figure(images: torch.Tensor, config: ViewConfig = ViewConfig(), seed: int = 0, impl: str = "fused",
                      figure=None, titles: list[str] | None = None):
    """A matplotlib Figure: the images (n, 3, H, W) on top, two independent views of each below."""
    from matplotlib.figure import Figure

    gen = torch.Generator().manual_seed(seed)
    rows = [images, simclr_views(images, config, gen, impl=impl), simclr_views(images, config, gen, impl=impl)]
    n = len(images)
    fig = figure if figure is not None else Figure(figsize=(1.3 * n, 4.2))
    fig.clear()
    axes = fig.subplots(3, n, squeeze=False)
    for r, (row, name) in enumerate(zip(rows, ("image", "view 1", "view 2"))):
        for c, img in enumerate(_to_display(row)):
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


def figure_png(fig):
    """An IPython Image (PNG) of a matplotlib Figure, whatever the plotting backend."""
    import io

    from IPython.display import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return Image(data=buffer.getvalue(), format="png")


def show_figure(fig) -> None:
    """Display a matplotlib Figure as a PNG output (works in CI and in Jupyter alike)."""
    from IPython.display import display

    display(figure_png(fig))


def show_view_pairs(images: torch.Tensor, config: ViewConfig = ViewConfig(), seed: int = 0,
                    titles: list[str] | None = None) -> None:
    """Draw and display `view_pairs_figure` (the images and two views of each)."""
    show_figure(view_pairs_figure(images, config, seed, titles=titles))


class ViewExplorer:
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
        from matplotlib.figure import Figure

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
        self.figure = Figure(figsize=(1.3 * len(self.images), 4.2))
        self.widget = W.VBox([W.HBox(list(self.switches.values()) + [self.button]),
                              W.HBox(list(self.sliders.values())[:3]), W.HBox(list(self.sliders.values())[3:])])
        self._handle = None  # the figure's display handle, once shown

    def set(self, **changes) -> ViewConfig:
        """Change config fields (and `min_scale`, the crop's smallest area) and redraw; returns the new config."""
        if "min_scale" in changes:
            changes["scale"] = (float(changes.pop("min_scale")), self.config.scale[1])
        self.config = replace(self.config, **changes)
        self._refresh()
        return self.config

    def resample(self) -> None:
        """New random views with the same settings."""
        self.seed += 1
        self._refresh()

    def draw(self):
        return view_pairs_figure(self.images, self.config, self.seed, figure=self.figure, titles=self.titles)

    def _refresh(self) -> None:
        if self._handle is not None:  # update the figure output in place (a plain output, so CI shows it too)
            self.draw()
            self._handle.update(figure_png(self.figure))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
        self.draw()
        self._handle = display(figure_png(self.figure), display_id=True)


__all__ = ["ViewExplorer", "ViewsLessonConfig", "VIEWS_LESSON_PRESETS", "figure_png", "show_figure", "show_view_pairs", "view_pairs_figure"]
