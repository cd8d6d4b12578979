"""The curves of a SimCLR run: the loss per step and the kNN monitor against wall-clock, drawn once or live.

    plot_history(history)                       # a figure of a finished (or resumed) run
    train_simclr(..., config)                   # with config.live_plot, LivePlot redraws it after each kNN check
"""

from __future__ import annotations

from course_lib.contrastive.evaluate import KNN_K
from course_lib.training import History


def plot_history(history: History, ax=None):
    """Loss per step (left) and kNN top-1 against wall-clock minutes (right). Returns the figure."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2)) if ax is None else (ax[0].figure, ax)
    a1.plot(history.losses, lw=0.8)
    a1.set(xlabel="step", ylabel="loss", title="training loss")
    knn = [e for e in history.evals if "knn" in e]
    a2.plot([e["seconds"] / 60 for e in knn], [100 * e["knn"] for e in knn], "o-")
    a2.set(xlabel="wall-clock minutes", ylabel="kNN top-1 (%)", title=f"kNN monitor (k={KNN_K}, t=0.1)")
    fig.tight_layout()
    return fig


class LivePlot:
    """Callback that redraws `plot_history` in one notebook output after every kNN check.

    The figure is one display that is updated in place, so the progress bar above it stays.
    """

    def __init__(self):
        self.handle = None

    def __call__(self, history: History) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        from course_lib.explore.figures import figure_image

        fig = plot_history(history)
        image = figure_image(fig)
        plt.close(fig)
        if self.handle is None:
            self.handle = display(image, display_id=True)
        else:
            self.handle.update(image)


__all__ = ["plot_history", "LivePlot"]
