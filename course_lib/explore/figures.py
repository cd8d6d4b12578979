"""The one display style of the course: figures as PNGs, images as arrays, explorers as live figures.

    png = figure_png(fig)          # a matplotlib Figure -> PNG bytes at DPI, under any backend
    show_figure(fig)               # display it as a plain image output (the same in CI and in Jupyter)
    image_array(images)            # (C, H, W) or (B, C, H, W) tensor -> numpy array for imshow

    class MyExplorer(LiveFigure):  # controls above a figure that follows them
        def __init__(self, ...):
            ...build the controls (ipywidgets); each change of state ends with self.refresh()
            self._init_display([controls], figsize=(8, 4))
        def draw(self):            # redraw self.figure from the current state; return it
            ...

Displayed in a notebook, an explorer is ONE output that holds two representations: the live widget
(controls, then an Output widget with the figure) and a PNG of the same figure. A frontend shows the
richest one it can render: JupyterLab and VS Code show the widget, and a renderer without a live kernel
(nbval, nbconvert, a page on GitHub) shows the PNG. So a learner never sees the plot twice, and the
executed notebook still shows the figure where no kernel runs. Every change redraws through
`refresh()`, which replaces the image inside the Output widget (or, under ipympl, redraws the canvas).

ipywidgets, IPython and matplotlib are imported only when an explorer is built, drawn or shown.
"""

from __future__ import annotations

import io

import numpy as np
import torch

DPI = 80  # every figure the explorers send: an 11 x 7 inch figure is 880 x 560 pixels, ~100 kB of PNG


def figure_png(fig) -> bytes:
    """PNG bytes of a matplotlib Figure at DPI (savefig needs no pyplot, so any backend works)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def figure_image(fig):
    """An IPython Image (PNG) of a matplotlib Figure."""
    from IPython.display import Image

    return Image(data=figure_png(fig), format="png")


def show_figure(fig) -> None:
    """Display a matplotlib Figure as a plain PNG output: what nbval records and a rendered page shows."""
    from IPython.display import display

    display(figure_image(fig))


def image_array(images: torch.Tensor) -> np.ndarray:
    """Images for imshow: (C, H, W) -> (H, W, 3) or (H, W); (B, C, H, W) -> (B, H, W, 3) or (B, H, W).

    uint8 is divided by 255; float images in [0, 1] are clamped (colour ops can round a hair outside);
    float images far outside it (normalised tensors) are stretched to [0, 1] one by one, for viewing only.
    Returns float32 numpy, C = 1 dropped so that imshow draws it in gray.
    """
    if images.dim() not in (3, 4) or images.shape[-3] not in (1, 3):
        raise ValueError(f"expected an image (C, H, W) or a batch (B, C, H, W) with C = 1 or 3, got {tuple(images.shape)}.")
    x = images.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    batch = x if x.dim() == 4 else x[None]  # (B, C, H, W)
    lo = batch.amin(dim=(1, 2, 3), keepdim=True)
    hi = batch.amax(dim=(1, 2, 3), keepdim=True)
    outside = (lo < -0.01) | (hi > 1.01)  # (B, 1, 1, 1): which images are not in [0, 1]
    stretched = (batch - lo) / (hi - lo).clamp_min(1e-8)
    batch = torch.where(outside, stretched, batch.clamp(0, 1))
    batch = batch[:, 0] if batch.shape[1] == 1 else batch.permute(0, 2, 3, 1)  # (B, H, W) or (B, H, W, 3)
    return (batch if x.dim() == 4 else batch[0]).numpy()


def _ipympl_backend() -> bool:
    import matplotlib

    return any(name in matplotlib.get_backend().lower() for name in ("ipympl", "widget"))


class LiveFigure:
    """What every explorer shares: ipywidgets controls above a matplotlib figure that follows them.

    A subclass builds its controls, calls `_init_display`, implements `draw()` and calls `refresh()` after
    each change of state. `figure` is a matplotlib Figure; `widget` is the ipywidgets box shown in
    Jupyter. Until the explorer is displayed, state changes draw nothing (tests and scripts stay fast).
    """

    interactive = False  # True when the figure is an ipympl canvas, which receives clicks
    _displayed = False

    def _init_display(self, controls: list, figsize: tuple[float, float], clickable: bool = False) -> None:
        """Make `figure` and `widget`: the controls (a list of widgets, top to bottom), then the figure.

        clickable: where ipympl is the matplotlib backend, the figure is its canvas widget, so that
        clicks reach `figure.canvas.mpl_connect` handlers; elsewhere PNGs go into an Output widget.
        """
        import ipywidgets as W

        self.interactive = clickable and _ipympl_backend()
        if self.interactive:
            import matplotlib.pyplot as plt

            with plt.ioff():  # no inline copy of the figure besides its canvas
                self.figure = plt.figure(figsize=figsize, dpi=DPI)
            area = self.figure.canvas
        else:
            from matplotlib.figure import Figure

            self.figure = Figure(figsize=figsize, dpi=DPI)
            self.output = W.Output()
            area = self.output
        self.widget = W.VBox([*controls, area])

    def draw(self):
        """Redraw `self.figure` from the current state and return it."""
        raise NotImplementedError

    def png(self) -> bytes:
        """The current figure as PNG bytes."""
        self.draw()
        return figure_png(self.figure)

    def show(self) -> None:
        """Display the current figure as a plain image: a snapshot that stays when the controls move."""
        show_figure(self.draw())

    def refresh(self) -> None:
        """Redraw the displayed figure in place (nothing to do until the explorer is on screen)."""
        if self._displayed:
            self._update(None)

    def _update(self, png: bytes | None) -> None:
        if self.interactive:
            self.draw()
            self.figure.canvas.draw_idle()
            return
        from IPython.display import Image

        # Set the Output widget's state rather than printing into it: no display messages, which
        # nbclient would have to route (it stalled for 100 s on them in a test run).
        self.output.outputs = ()
        self.output.append_display_data(Image(data=png if png is not None else self.png(), format="png"))

    def _ipython_display_(self) -> None:
        """One output: the widget for live frontends, and a PNG of the figure for every other renderer."""
        import base64

        from IPython.display import display

        png = self.png()
        bundle = dict(self.widget._repr_mimebundle_())
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
        display(bundle, raw=True)
        self._displayed = True
        self._update(png)


__all__ = ["DPI", "LiveFigure", "figure_image", "figure_png", "image_array", "show_figure"]
