"""The embedding explorer: a t-SNE map coloured by class, and what the encoder calls similar.

    explorer = EmbeddingExplorer({"random init": h_random, "SimCLR": h_trained}, labels,
                                 images=images, class_names=CIFAR10_CLASSES)
    explorer                     # in Jupyter: controls + figure; a static figure where no frontend runs
    explorer.view_picker.value = "SimCLR"   # what the dropdown does; explorer.show() adds a snapshot

Selecting a point (click it where ipympl is installed, else type its index or pick a class) shows its
image and its k nearest neighbours in the ORIGINAL feature space by cosine similarity: the 2-D map is
for orientation, the neighbours are what the encoder actually computes. The logic is in the pure
functions below (tested headlessly); the neighbours are `similarity.cosine_topk`, as in the weighted kNN
classifier. Points may also carry a role (say "support" and "query" in a few-shot task): colours stay
the classes and neighbours count as alike when they share the class, while each role gets its own
marker, so the map shows whether queries land among their class's support points. The explorer
displays like every explorer (`figures.LiveFigure`).
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np
import torch

from course_lib.explore.figures import LiveFigure, image_array
from course_lib.similarity import cosine_topk
from course_lib.tsne import tsne


def nearest_neighbours(features: torch.Tensor, index: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k points most cosine-similar to point `index` (itself excluded), most similar first.

    features: (N, D) float. Returns indices (k,) int64 and cosine similarities (k,) float32, on CPU.
    """
    n = features.shape[0]
    if not 0 <= index < n:
        raise IndexError(f"point index {index} is out of range for {n} points (0 to {n - 1}).")
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and N - 1 = {n - 1}, got {k}.")
    f = features.detach()
    sims, indices = cosine_topk(f[index:index + 1], f, k, exclude=torch.tensor([index]))  # (1, k) each
    return indices[0].cpu(), sims[0].cpu()


def neighbour_label_agreement(features: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of (point, neighbour) pairs sharing a label, over each point's k cosine neighbours.

    features: (N, D) float, labels: (N,) int. 1.0: every neighbour is of the same class; an encoder that
    ignores classes scores about the frequency of a point's own class.
    """
    f = features.detach()
    _, neighbours = cosine_topk(f, f, k, exclude=torch.arange(len(f)))  # (N, k); a point is not its own neighbour
    labels = labels.to(neighbours.device)
    return (labels[neighbours] == labels[:, None]).float().mean().item()


def class_name(label: int, class_names: Sequence[str] | None) -> str:
    return class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)


def point_name(item: dict) -> str:
    """A point's class and, when it has one, its role: "class 2 query"; item: an entry of `neighbour_panel_data`."""
    return item["name"] if item["role"] is None else f"{item['name']} {item['role']}"


def scatter_data(embedding: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str] | None = None,
                 roles: Sequence[str] | None = None) -> list[dict]:
    """One entry per class present, by label, or per (class, role) with `roles` (one name per point).

    Entries: {"label", "name", "role", "x", "y", "indices"} (numpy arrays; "role" is None without roles).
    """
    e = embedding.detach().cpu().numpy()
    lab = labels.detach().cpu().numpy()
    role = np.asarray(roles if roles is not None else [None] * len(lab), dtype=object)
    out = []
    for c in np.unique(lab):
        for r in dict.fromkeys(role[lab == c]):  # the roles of this class, in order of appearance
            idx = np.flatnonzero((lab == c) & (role == r))
            out.append({"label": int(c), "name": class_name(int(c), class_names), "role": r,
                        "x": e[idx, 0], "y": e[idx, 1], "indices": idx})
    return out


ROLE_MARKERS = ("o", "s", "^", "D", "v", "P")  # by role, the most numerous first


def role_styles(roles: Sequence[str]) -> dict[str, dict]:
    """Scatter keywords per role: {role: {"marker", "s", "zorder", "edgecolors"}}.

    The most numerous role gets small circles at the bottom; each rarer role a larger, outlined marker
    drawn above it (ties: in order of appearance), so that 5 support points stay visible among 75 queries.
    """
    counts = Counter(roles)
    order = sorted(counts, key=lambda r: -counts[r])  # stable: ties keep their order of appearance
    return {r: {"marker": ROLE_MARKERS[i % len(ROLE_MARKERS)], "s": 10 if i == 0 else 40, "zorder": 2 + i,
                "edgecolors": "none" if i == 0 else "black"} for i, r in enumerate(order)}


def check_roles(roles: Sequence[str] | None, n: int) -> list[str] | None:
    """`roles` as a list of N names (or None), or a ValueError that says what to pass."""
    if roles is None:
        return None
    kind = type(roles).__name__
    roles = [roles] if isinstance(roles, str) else list(roles)  # one pass over it: roles may be a generator
    if kind == "str" or not all(isinstance(r, str) for r in roles):
        raise ValueError(f"roles must be one name (str) per point, e.g. ['support'] * 25 + ['query'] * 75; got {kind}.")
    if len(roles) != n:
        raise ValueError(f"roles has {len(roles)} entries for {n} points; pass one role per point, e.g. 'support' or 'query'.")
    return roles


def neighbour_panel_data(features: torch.Tensor, labels: torch.Tensor, index: int, k: int,
                         class_names: Sequence[str] | None = None, images: torch.Tensor | None = None,
                         roles: Sequence[str] | None = None) -> dict:
    """What the neighbours panel shows for point `index`: itself, its k cosine neighbours, and how many agree.

    Returns {"index", "label", "name", "role", "image", "neighbours": [{"index", "label", "name", "role",
    "similarity", "same_class", "image"}], "agreement"}; "image" entries are None without `images`
    (N, C, H, W), "role" entries None without `roles` (N names). A neighbour agrees when it has the same
    label, whatever its role.
    """
    indices, sims = nearest_neighbours(features, index, k)
    label = int(labels[index])

    def point(i: int) -> dict:
        lab = int(labels[i])
        return {"index": i, "label": lab, "name": class_name(lab, class_names), "role": None if roles is None else roles[i],
                "image": None if images is None else image_array(images[i])}

    neighbours = [{**point(i), "similarity": s, "same_class": int(labels[i]) == label}
                  for i, s in zip(indices.tolist(), sims.tolist())]
    return {**point(index), "neighbours": neighbours, "agreement": sum(n["same_class"] for n in neighbours) / k}


def closest_point(embedding: torch.Tensor, x: float, y: float) -> int:
    """Index of the map point nearest to (x, y): what a click on the scatter selects."""
    d = ((embedding.detach().cpu().double() - torch.tensor([x, y], dtype=torch.float64)) ** 2).sum(1)
    return int(d.argmin())


class EmbeddingExplorer(LiveFigure):
    """A t-SNE map of one of several views of the same N points, with a nearest-neighbours panel.

    views: {name: features (N, D)}, e.g. {"random init": h_random, "SimCLR": h_trained}; labels: (N,) int;
    images: (N, C, H, W) uint8 or float, or None; class_names: one name per label; roles: one name per
    point (e.g. "support" or "query"), drawn as marker shapes, or None; view: the view shown first
    (default: the first). State after any change: `view`, `perplexity`, `embedding` (N, 2), `selected`,
    `panel`, `neighbours`.
    """

    def __init__(self, views: Mapping[str, torch.Tensor], labels: torch.Tensor, images: torch.Tensor | None = None,
                 class_names: Sequence[str] | None = None, perplexity: int = 30, k: int = 8, seed: int = 0,
                 impl: str = "auto", view: str | None = None, roles: Sequence[str] | None = None):
        if not views:
            raise ValueError("views is empty: pass {name: features (N, D)}, e.g. {'SimCLR': h_trained}.")
        self.labels = torch.as_tensor(labels).detach().cpu().long()
        n = len(self.labels)
        for name, f in views.items():
            if f.dim() != 2 or f.shape[0] != n:
                raise ValueError(f"view {name!r} has shape {tuple(f.shape)}; expected ({n}, D), one row per label.")
        if images is not None and len(images) != n:
            raise ValueError(f"images has {len(images)} entries for {n} labels; pass one image per point.")
        if view is not None and view not in views:
            raise ValueError(f"view {view!r} is not one of the views: {', '.join(map(repr, views))}.")
        self.roles = check_roles(roles, n)
        self.views = {name: f.detach() for name, f in views.items()}
        self.images, self.class_names, self.k, self.seed, self.impl = images, class_names, k, seed, impl
        self.view = next(iter(self.views)) if view is None else view
        self.perplexity, self.selected = int(perplexity), 0
        self.embedding: torch.Tensor | None = None
        self.panel: dict = {}
        self._build_widgets()
        self._update_map()
        self._select(0)

    @property
    def neighbours(self) -> list[int]:
        return [nb["index"] for nb in self.panel["neighbours"]]

    # -- widgets -------------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        import ipywidgets as W

        n = len(self.labels)
        self.view_picker = W.Dropdown(options=list(self.views), value=self.view, description="view")
        top = max(self.perplexity, min(100, (n - 1) // 3))
        self.perplexity_slider = W.IntSlider(value=self.perplexity, min=min(5, self.perplexity), max=top, step=5,
                                             description="perplexity", continuous_update=False)
        self.index_box = W.BoundedIntText(value=0, min=0, max=n - 1, description="point")
        present = sorted(set(self.labels.tolist()))
        self.class_picker = W.Dropdown(options=[("(pick a class)", -1)] + [(class_name(c, self.class_names), c) for c in present],
                                       value=-1, description="class")
        self.status = W.HTML()
        self.view_picker.observe(lambda ch: self._set_view(ch["new"]), names="value")
        self.perplexity_slider.observe(lambda ch: self._set_perplexity(ch["new"]), names="value")
        self.index_box.observe(lambda ch: self._select(ch["new"]), names="value")
        self.class_picker.observe(lambda ch: self._pick_class(ch["new"]), names="value")

        controls = W.HBox([self.view_picker, self.perplexity_slider, self.index_box, self.class_picker])
        self._init_display([controls, self.status], figsize=(11, 7), clickable=True)
        self.figure.canvas.mpl_connect("button_press_event", self._on_click)  # ipympl only: an image takes no clicks

    def _set_view(self, name: str) -> None:
        self.view = name
        self._update_map()
        self._select(self.selected)

    def _set_perplexity(self, value: int) -> None:
        self.perplexity = int(value)
        self._update_map()
        self.refresh()

    def _pick_class(self, label: int) -> None:
        if label >= 0:
            self.index_box.value = int(torch.nonzero(self.labels == label)[0])  # the first point of that class

    def _on_click(self, event) -> None:
        if self.embedding is not None and event.inaxes is getattr(self, "_scatter_ax", None) and event.xdata is not None:
            self.index_box.value = closest_point(self.embedding, event.xdata, event.ydata)

    def _update_map(self) -> None:
        self.embedding = tsne(self.views[self.view], perplexity=self.perplexity, impl=self.impl, seed=self.seed).cpu()

    def _select(self, index: int) -> None:
        self.selected = int(index)
        self.panel = neighbour_panel_data(self.views[self.view], self.labels, self.selected, self.k,
                                          self.class_names, self.images, self.roles)
        self.status.value = self._status()
        self.refresh()

    def _status(self) -> str:
        """One line: the selected point and how many of its neighbours share its class (by role, with roles)."""
        panel, same = self.panel, [nb for nb in self.panel["neighbours"] if nb["same_class"]]
        line = (f"<b>point {self.selected}</b> ({point_name(panel)}) in view <b>{self.view}</b>: {len(same)} of its "
                f"{self.k} nearest neighbours in feature space are also {panel['name']}")
        if self.roles is None or not same:
            return line + "."
        by_role = Counter(nb["role"] for nb in same)
        return line + ": " + ", ".join(f"{count} {r}" for r, count in by_role.items()) + "."

    # -- drawing -------------------------------------------------------------------------------------
    def draw(self):
        """Redraw `figure` from the current state, the map on top, the neighbours panel below; return it."""
        fig, k = self.figure, self.k
        fig.clear()
        grid = fig.add_gridspec(2, k + 1, height_ratios=[3.2, 1])
        self._scatter_ax = fig.add_subplot(grid[0, :])
        self._draw_map(self._scatter_ax)
        items = [(self.panel, f"point {self.selected}\n{point_name(self.panel)}", "black")]
        items += [(n, f"{point_name(n)}\ncos {n['similarity']:.2f}", "green" if n["same_class"] else "red")
                  for n in self.panel["neighbours"]]
        for j, (item, title, colour) in enumerate(items):
            sub = fig.add_subplot(grid[1, j])
            if item["image"] is not None:
                sub.imshow(item["image"], cmap="gray" if item["image"].ndim == 2 else None)
            sub.set_title(title, fontsize=8, color=colour)
            sub.set_xticks([]), sub.set_yticks([])
        fig.subplots_adjust(left=0.02, right=0.85, top=0.94, bottom=0.02, hspace=0.35, wspace=0.1)
        return fig

    def _draw_map(self, ax) -> None:
        """The t-SNE map: colour by class, marker by role; the selected point and its neighbours outlined."""
        import matplotlib
        from matplotlib.lines import Line2D

        cmap = matplotlib.colormaps["tab10" if int(self.labels.max()) < 10 else "tab20"]
        styles = role_styles(self.roles) if self.roles is not None else {None: {"marker": "o", "s": 8, "zorder": 2}}
        for group in scatter_data(self.embedding, self.labels, self.class_names, self.roles):
            ax.scatter(group["x"], group["y"], color=cmap(group["label"] % cmap.N), alpha=0.75, **styles[group["role"]])
        e, nb = self.embedding.numpy(), self.neighbours
        # Outlines only, above every point: the selection must not hide the points it marks or their neighbours.
        ax.scatter(e[nb, 0], e[nb, 1], s=90, facecolors="none", edgecolors="black", linewidths=1.0, zorder=20)
        ax.scatter(e[self.selected, 0], e[self.selected, 1], s=400, marker="*", facecolors="none",
                   edgecolors="black", linewidths=1.5, zorder=21)
        handles = [Line2D([], [], ls="", marker="o", color=cmap(c % cmap.N), label=class_name(c, self.class_names))
                   for c in sorted(set(self.labels.tolist()))]
        handles += [Line2D([], [], ls="", marker=st["marker"], color="gray", markeredgecolor="black", label=r)
                    for r, st in styles.items() if r is not None]
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        ax.set_title(f"{self.view}: t-SNE map (perplexity {self.perplexity}). \u2606 point {self.selected} "
                     f"({point_name(self.panel)}); \u25cb its {self.k} nearest neighbours in feature space (cosine)",
                     fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])

    def show(self, view: str | None = None) -> None:
        """Display the figure for `view` (default: the current one) as a plain image: a snapshot."""
        if view is not None:
            self.view_picker.value = view  # runs the observer: new map, same selected point
        super().show()


__all__ = ["EmbeddingExplorer", "check_roles", "closest_point", "nearest_neighbours", "neighbour_label_agreement",
           "neighbour_panel_data", "point_name", "role_styles", "scatter_data"]
