"""The explorers, headless: their pure functions, widget values driving their state through observers, and
the one display style they share (`explore.figures`)."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from course_lib import tsne as T  # noqa: E402
from course_lib.checks import check_neighbour_label_agreement  # noqa: E402
from course_lib.checks.framework import CheckFailed  # noqa: E402
from course_lib.explore.embedding import (EmbeddingExplorer, closest_point, nearest_neighbours,  # noqa: E402
                                         neighbour_label_agreement, neighbour_panel_data, role_styles, scatter_data)
from course_lib.explore.figures import DPI, figure_png, image_array  # noqa: E402
from course_lib.lessons import DEMO_PRESETS, EXPLORER_PRESETS, VIEWS_LESSON_PRESETS  # noqa: E402

N, CLASSES = 90, 3
NAMES = ["cat", "dog", "ship"]


@pytest.fixture(scope="module")
def data():
    """Labels, two views (random: no class structure; trained: classes separated), uint8 images."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(N) % CLASSES
    random = torch.randn(N, 12, generator=gen)
    trained = random.clone()
    trained[:, :CLASSES] += 5 * torch.nn.functional.one_hot(labels, CLASSES)
    images = torch.randint(0, 256, (N, 3, 8, 8), dtype=torch.uint8, generator=gen)
    return labels, random, trained, images


@pytest.fixture
def explorer(data, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    labels, random, trained, images = data
    return EmbeddingExplorer({"random init": random, "SimCLR": trained}, labels, images=images,
                             class_names=NAMES, perplexity=10, k=5)


def test_nearest_neighbours_is_cosine_and_excludes_self():
    f = torch.tensor([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [-1.0, 0.0], [0.2, 0.0]])
    idx, sims = nearest_neighbours(f, 0, 3)
    assert idx.tolist() == [4, 1, 2]  # [0.2, 0] has cosine 1 despite its small norm; 0 itself is excluded
    assert torch.allclose(sims, torch.tensor([1.0, 10 / 101**0.5, 0.0]))
    with pytest.raises(ValueError, match="k must be between 1 and N - 1"):
        nearest_neighbours(f, 0, 5)
    with pytest.raises(IndexError, match="out of range"):
        nearest_neighbours(f, 7, 2)


def test_neighbour_label_agreement_by_hand():
    f = torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    assert neighbour_label_agreement(f, torch.tensor([0, 0, 1, 1]), 1) == 1.0
    assert neighbour_label_agreement(f, torch.tensor([0, 1, 0, 1]), 1) == 0.0
    assert neighbour_label_agreement(f, torch.tensor([0, 0, 1, 1]), 2) == 0.5  # each point: 1 of its 2 nearest agrees


def test_agreement_separates_views(data):
    labels, random, trained, _ = data
    assert neighbour_label_agreement(trained, labels, 5) > 0.9 > 0.5 > neighbour_label_agreement(random, labels, 5)


def test_scatter_data_groups_points_by_class():
    e = torch.arange(12.0).reshape(6, 2)
    groups = scatter_data(e, torch.tensor([2, 0, 2, 0, 0, 2]), NAMES)
    assert [g["name"] for g in groups] == ["cat", "ship"]
    assert groups[0]["indices"].tolist() == [1, 3, 4] and groups[0]["x"].tolist() == [2.0, 6.0, 8.0]
    assert [g["name"] for g in scatter_data(e, torch.tensor([0, 1, 7, 0, 1, 7]), NAMES)] == ["cat", "dog", "7"]


def test_panel_data_and_images(data):
    labels, _, trained, images = data
    panel = neighbour_panel_data(trained, labels, 4, 5, NAMES, images)
    assert panel["index"] == 4 and panel["name"] == "dog" and panel["image"].shape == (8, 8, 3)
    assert [n["index"] for n in panel["neighbours"]] == nearest_neighbours(trained, 4, 5)[0].tolist()
    assert panel["agreement"] == sum(n["same_class"] for n in panel["neighbours"]) / 5
    assert neighbour_panel_data(trained, labels, 4, 5)["neighbours"][0]["image"] is None


def test_closest_point():
    e = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-3.0, 1.0]])
    assert closest_point(e, 4.0, 4.5) == 1 and closest_point(e, -2.0, 0.0) == 2


def test_explorer_starts_with_a_map_and_a_selection(explorer, data):
    labels, random, _, _ = data
    assert explorer.view == "random init" and explorer.selected == 0
    assert explorer.embedding.shape == (N, 2)
    assert explorer.neighbours == nearest_neighbours(random, 0, 5)[0].tolist()
    assert "point 0" in explorer.status.value and "cat" in explorer.status.value


def test_view_dropdown_switches_map_and_neighbours(explorer, data):
    labels, _, trained, _ = data
    before = explorer.embedding.clone()
    explorer.view_picker.value = "SimCLR"  # the observer runs
    assert explorer.view == "SimCLR" and not torch.equal(explorer.embedding, before)
    assert torch.equal(explorer.embedding, T.tsne(trained, perplexity=10))  # the cached map of that view
    assert explorer.neighbours == nearest_neighbours(trained, 0, 5)[0].tolist()
    assert explorer.panel["agreement"] == 1.0


def test_index_box_and_class_picker_select_points(explorer, data):
    labels, random, _, _ = data
    explorer.index_box.value = 17
    assert explorer.selected == 17 and explorer.panel["label"] == int(labels[17])
    assert explorer.neighbours == nearest_neighbours(random, 17, 5)[0].tolist()
    explorer.class_picker.value = 2  # "ship": the first ship is point 2
    assert explorer.selected == 2 and explorer.index_box.value == 2 and explorer.panel["name"] == "ship"


def test_perplexity_slider_recomputes_map(explorer, data):
    before = explorer.embedding.clone()
    explorer.perplexity_slider.value = 20
    assert explorer.perplexity == 20 and not torch.equal(explorer.embedding, before)
    assert torch.equal(explorer.embedding, T.tsne(data[1], perplexity=20))


def test_click_selects_the_nearest_map_point(explorer):
    explorer.draw()
    target = explorer.embedding[33]
    event = type("Click", (), {"inaxes": explorer._scatter_ax, "xdata": float(target[0]), "ydata": float(target[1])})()
    explorer._on_click(event)
    assert explorer.selected == 33


def test_draw_makes_a_static_figure(explorer):
    explorer.draw()
    axes = explorer.figure.axes
    assert len(axes) == 1 + 1 + 5  # the map, the selected point, its 5 neighbours
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == NAMES
    assert axes[1].get_title().startswith("point 0")


def test_bad_explorer_input_is_explained(data):
    labels, random, _, images = data
    with pytest.raises(ValueError, match="expected \\(90, D\\)"):
        EmbeddingExplorer({"v": random[:50]}, labels)
    with pytest.raises(ValueError, match="one image per point"):
        EmbeddingExplorer({"v": random}, labels, images=images[:10])
    with pytest.raises(ValueError, match="views is empty"):
        EmbeddingExplorer({}, labels)


def test_lesson_presets_cover_every_tier_and_fit_it():
    for presets in (EXPLORER_PRESETS, VIEWS_LESSON_PRESETS, DEMO_PRESETS):
        assert set(presets) == {"smoke", "laptop", "full"}
    assert EXPLORER_PRESETS["smoke"].n_points <= 500
    for cfg in EXPLORER_PRESETS.values():
        assert cfg.n_points >= 3 * cfg.perplexity and cfg.k >= 1
    assert DEMO_PRESETS["smoke"].rows <= DEMO_PRESETS["laptop"].rows <= DEMO_PRESETS["full"].rows


def test_check_rejects_a_self_counting_answer():
    def counts_itself(features, labels, k):
        f = torch.nn.functional.normalize(features.float(), dim=1)
        neighbours = (f @ f.T).topk(k, dim=1).indices  # forgot to exclude the point itself
        return (labels[neighbours] == labels[:, None]).float().mean().item()

    with pytest.raises(CheckFailed, match="wrong value"):
        check_neighbour_label_agreement(counts_itself)


def test_image_array_scales_each_image_for_imshow():
    assert image_array(torch.full((1, 4, 4), 255, dtype=torch.uint8)).shape == (4, 4)  # gray: C = 1 dropped
    assert image_array(torch.full((1, 4, 4), 255, dtype=torch.uint8)).max() == 1.0
    normalised = image_array(torch.randn(3, 4, 5) * 3)
    assert normalised.shape == (4, 5, 3) and normalised.min() == 0 and normalised.max() == 1  # stretched
    in_range = torch.rand(3, 4, 5) * 0.5
    batch = image_array(torch.stack([in_range, torch.randn(3, 4, 5) * 3, in_range + 1e-3]))
    assert batch.shape == (3, 4, 5, 3)
    torch.testing.assert_close(torch.from_numpy(batch[0]), in_range.permute(1, 2, 0))  # left alone
    assert batch[1].min() == 0 and batch[1].max() == 1 and batch[2].max() <= 1  # each image on its own
    with pytest.raises(ValueError, match="C = 1 or 3"):
        image_array(torch.zeros(4, 8, 8))


def _explorers(data, tmp_path, monkeypatch):
    """One small instance of each explorer of the course, and a change of state for each."""
    from course_lib.explore.adaptation import AdaptationExplorer
    from course_lib.explore.spectrum import SpectrumExplorer
    from course_lib.explore.temperature import TemperatureExplorer
    from course_lib.explore.views import ViewExplorer
    from course_lib.meta.models import SinusoidMLP

    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    labels, random, trained, images = data
    embedding = EmbeddingExplorer({"random init": random, "SimCLR": trained}, labels, images=images, perplexity=10, k=3)
    temperature = TemperatureExplorer(temperatures=(0.1, 1.0))
    views = ViewExplorer(images[:3], seed=1)
    adaptation = AdaptationExplorer({"a": SinusoidMLP(8)}, inner_lr=0.01, max_steps=3, max_shots=6, inner_steps=0, shots=3)
    spectrum = SpectrumExplorer({"spread": [(1, torch.ones(4)), (2, torch.ones(4))],
                                 "collapsing": [(1, torch.ones(4)), (2, torch.tensor([1.0, 0, 0, 0]))]})
    return [(embedding, lambda: setattr(embedding.view_picker, "value", "SimCLR")),
            (temperature, lambda: temperature.set(1, 0.05)),
            (views, lambda: views.sliders["strength"].__setattr__("value", 2.0)),
            (adaptation, lambda: adaptation.set(inner_steps=3)),
            (spectrum, lambda: spectrum.set(0.0))]


def test_every_explorer_is_one_output_whose_figure_updates_in_place(data, tmp_path, monkeypatch):
    """Displayed: the widget and a PNG of the same figure in one bundle; a change replaces the PNG inside."""
    import base64
    import io

    import IPython.display
    from PIL import Image

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.append((objs, kw)))
    for explorer, change in _explorers(data, tmp_path, monkeypatch):
        name = type(explorer).__name__
        shown.clear()
        explorer._ipython_display_()
        assert len(shown) == 1 and shown[0][1] == {"raw": True}, name  # one output, not a widget plus an image
        bundle = shown[0][0][0]
        assert "application/vnd.jupyter.widget-view+json" in bundle, name
        png = base64.b64decode(bundle["image/png"])
        width, height = explorer.figure.get_size_inches()
        assert Image.open(io.BytesIO(png)).size == (round(width * DPI), round(height * DPI)), name
        assert explorer.widget.children[-1] is explorer.output and len(explorer.output.outputs) == 1, name
        assert base64.b64decode(explorer.output.outputs[0]["data"]["image/png"]) == png, name
        change()
        assert len(shown) == 1, name  # no new output: the figure inside the widget was replaced
        assert len(explorer.output.outputs) == 1, name
        assert base64.b64decode(explorer.output.outputs[0]["data"]["image/png"]) != png, name
        explorer.show()  # a snapshot: a plain image output
        assert len(shown) == 2 and type(shown[1][0][0]).__name__ == "Image", name


def test_explorers_draw_nothing_until_displayed(data, tmp_path, monkeypatch):
    for explorer, change in _explorers(data, tmp_path, monkeypatch):
        change()
        assert explorer.output.outputs == (), type(explorer).__name__
        assert figure_png(explorer.draw())[:4] == b"\x89PNG"


def test_adaptation_explorer_fits_each_model_on_the_first_k_shots():
    from course_lib.explore.adaptation import AdaptationExplorer
    from course_lib.meta.models import SinusoidMLP

    explorer = AdaptationExplorer({"a": SinusoidMLP(8), "b": SinusoidMLP(8)}, inner_lr=0.01, max_steps=3, max_shots=6)
    explorer.steps_slider.value = 2  # what the slider does
    explorer.set(shots=4)
    assert (explorer.inner_steps, explorer.shots) == (2, 4)
    ax = explorer.draw().axes[0]
    assert len(ax.lines) == 3  # the true curve and one fit per model
    assert len(ax.collections[0].get_offsets()) == 4  # the K support points
    assert "a, 2 step(s)" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ValueError, match="shots <= max_shots"):
        AdaptationExplorer({"a": SinusoidMLP(8)}, inner_lr=0.01, max_shots=6, shots=10)


def test_embedding_explorer_can_start_on_any_view(data, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    labels, random, trained, _ = data
    explorer = EmbeddingExplorer({"random init": random, "SimCLR": trained}, labels, perplexity=10, k=5, view="SimCLR")
    assert explorer.view == explorer.view_picker.value == "SimCLR" and explorer.panel["agreement"] == 1.0
    with pytest.raises(ValueError, match="not one of the views"):
        EmbeddingExplorer({"v": random}, labels, view="w")


ROLES = ["support"] * 15 + ["query"] * (N - 15)  # a few-shot task: 5 support points per class, the rest queries


def test_neighbours_of_the_same_class_agree_whatever_their_role():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [1.0, 0.3], [0.1, 1.0], [0.2, 1.0]])
    labels, roles = torch.tensor([0, 1, 0, 0, 1, 1]), ["support", "support", "query", "query", "query", "query"]
    panel = neighbour_panel_data(f, labels, 2, 2, NAMES, roles=roles)
    assert (panel["name"], panel["role"]) == ("cat", "query")
    assert [(n["index"], n["role"], n["same_class"]) for n in panel["neighbours"]] == [(0, "support", True), (3, "query", True)]
    assert panel["agreement"] == 1.0  # the class's support point counts: what the lesson asks about queries
    assert neighbour_panel_data(f, labels, 2, 2)["role"] is None


def test_scatter_data_splits_each_class_by_role():
    e = torch.arange(12.0).reshape(6, 2)
    groups = scatter_data(e, torch.tensor([1, 0, 1, 0, 0, 1]), NAMES, roles=["s", "s", "q", "q", "q", "q"])
    assert [(g["name"], g["role"], g["indices"].tolist()) for g in groups] == [
        ("cat", "s", [1]), ("cat", "q", [3, 4]), ("dog", "s", [0]), ("dog", "q", [2, 5])]
    assert {g["role"] for g in scatter_data(e, torch.tensor([1, 0, 1, 0, 0, 1]))} == {None}


def test_role_styles_draw_the_rarer_role_larger_and_on_top():
    styles = role_styles(ROLES)
    assert list(styles) == ["query", "support"]  # the most numerous first
    assert (styles["query"]["marker"], styles["support"]["marker"]) == ("o", "s")
    assert styles["support"]["zorder"] > styles["query"]["zorder"] and styles["support"]["s"] > styles["query"]["s"]
    assert list(role_styles(["b", "a", "a", "b"])) == ["b", "a"]  # a tie keeps the order of appearance


def test_explorer_with_roles_colours_by_class_and_marks_the_role(data, tmp_path, monkeypatch):
    import matplotlib.colors as mcolors

    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    labels, _, trained, images = data
    explorer = EmbeddingExplorer({"v": trained}, labels, images=images, class_names=NAMES, perplexity=10, k=5, roles=ROLES)
    ax = explorer.draw().axes[0]
    points = ax.collections[:2 * CLASSES]  # one scatter per (class, role); then the rings and the star
    colours = [mcolors.to_hex(c.get_facecolor()[0], keep_alpha=False) for c in points]
    assert colours[0::2] == colours[1::2] and len(set(colours)) == CLASSES  # support and query of a class: one colour
    markers = {tuple(map(tuple, c.get_paths()[0].vertices.round(3))) for c in points}
    assert len(markers) == 2  # one marker shape per role
    assert [t.get_text() for t in ax.get_legend().get_texts()] == NAMES + ["query", "support"]
    for index in (0, 20):  # a support and a query point: neighbours of its class count, whatever their role
        explorer.index_box.value = index
        same = [nb for nb in explorer.panel["neighbours"] if nb["same_class"]]
        assert all(nb["label"] == int(labels[index]) for nb in same) and len(same) == 5  # classes are separated
        assert f"{len(same)} of its 5 nearest neighbours" in explorer.status.value
        assert f"{explorer.panel['name']} {ROLES[index]}" in explorer.status.value
    assert {nb["role"] for nb in explorer.panel["neighbours"]} <= {"support", "query"}
    assert explorer.draw().axes[1].get_title() == f"point 20\n{NAMES[int(labels[20])]} query"


def test_roles_must_be_one_name_per_point(data):
    labels, random, _, _ = data
    with pytest.raises(ValueError, match="roles has 10 entries for 90 points; pass one role per point"):
        EmbeddingExplorer({"v": random}, labels, roles=["support"] * 10)
    with pytest.raises(ValueError, match="one name \\(str\\) per point"):
        EmbeddingExplorer({"v": random}, labels, roles=torch.zeros(N))
    with pytest.raises(ValueError, match="one name \\(str\\) per point"):
        EmbeddingExplorer({"v": random}, labels, roles="support")


def test_a_displayed_explorer_is_one_output_under_the_inline_backend(data, tmp_path, monkeypatch):
    """What Jupyter's inline backend adds: after each cell it shows every pyplot figure drawn in it. An explorer
    draws on its own Figure, never through pyplot, so its cell shows the explorer once and no static copy."""
    import matplotlib.pyplot as plt
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import activate_matplotlib
    from IPython.utils.capture import capture_output
    from matplotlib_inline.backend_inline import configure_inline_support

    inline = "module://matplotlib_inline.backend_inline"
    shell = InteractiveShell.instance()
    try:
        activate_matplotlib(inline)  # what a Jupyter kernel does: pyplot interactive, the inline backend
        configure_inline_support(shell, inline)  # and the flush of open figures after each cell
        with capture_output() as shown:
            shell.run_cell("import matplotlib.pyplot as plt; plt.plot([1, 2])")
        assert len(shown.outputs) == 1 and "image/png" in shown.outputs[0].data  # a stray pyplot figure is seen
        for explorer, change in _explorers(data, tmp_path, monkeypatch):
            shell.user_ns["explorer"], shell.user_ns["change"] = explorer, change
            with capture_output() as shown:
                shell.run_cell("explorer")
                shell.run_cell("change()")
            assert len(shown.outputs) == 1, (type(explorer).__name__, shown.outputs)
            assert "application/vnd.jupyter.widget-view+json" in shown.outputs[0].data, type(explorer).__name__
            assert plt.get_fignums() == [], type(explorer).__name__
    finally:
        plt.close("all")
        InteractiveShell.clear_instance()
        matplotlib.interactive(False)
        matplotlib.use("Agg")


def _spectrum_runs():
    """Two hand-made runs: one flat (4 equal values, rank 4) that collapses to [1, 0, 0, 0] (rank 1), one that
    stays flat over fewer, different steps."""
    flat, point = torch.ones(4), torch.tensor([1.0, 0.0, 0.0, 0.0])
    return {"alignment only": [(0, flat), (10, torch.tensor([3.0, 1.0, 0.0, 0.0])), (20, point)],
            "SimSiam": [(0, 2 * flat), (40, 5 * flat)]}


def test_spectrum_at_normalises_and_ranks_each_run():
    from course_lib.explore.spectrum import rank_curves, spectrum_at

    start, end = spectrum_at(_spectrum_runs(), 0.0), spectrum_at(_spectrum_runs(), 1.0)
    assert start["alignment only"].step == 0 and start["alignment only"].effective_rank == pytest.approx(4)
    assert start["SimSiam"].spectrum.tolist() == [0.25] * 4  # normalised to sum 1, whatever the scale
    assert (end["alignment only"].step, end["SimSiam"].step) == (20, 40)  # each run's own end
    assert end["alignment only"].spectrum.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert end["alignment only"].effective_rank == pytest.approx(1)
    middle = spectrum_at(_spectrum_runs(), 0.5)  # halfway: 10 of 20; SimSiam's 20 lies midway between 0 and 40, the earlier wins
    assert (middle["alignment only"].step, middle["SimSiam"].step) == (10, 0)
    assert middle["alignment only"].effective_rank == pytest.approx(4 / 3 ** 0.75)  # exp(H([3/4, 1/4]))
    assert spectrum_at(_spectrum_runs(), 0.74)["SimSiam"].step == 40  # nearest: 29.6 is nearer 40 than 0
    steps, ranks = rank_curves(_spectrum_runs())["alignment only"]
    assert steps == [0, 10, 20] and ranks == pytest.approx([4, 4 / 3 ** 0.75, 1])


def test_spectrum_explorer_slider_moves_figure_and_status(monkeypatch):
    import base64

    import IPython.display

    from course_lib.explore.spectrum import SpectrumExplorer

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.append((objs, kw)))
    explorer = SpectrumExplorer(_spectrum_runs(), progress=0.0)
    assert explorer.slider.step == 0.5  # 3 snapshots at most: stops at 0, 50% and 100%
    assert "effective rank 4 of 4, not collapsed" in explorer.status.value
    explorer._ipython_display_()
    assert len(shown) == 1 and shown[0][1] == {"raw": True}
    png = base64.b64decode(shown[0][0][0]["image/png"])
    assert base64.b64decode(explorer.output.outputs[0]["data"]["image/png"]) == png
    explorer.slider.value = 1.0  # what the slider does
    assert explorer.progress == 1.0 and len(shown) == 1 and len(explorer.output.outputs) == 1
    assert base64.b64decode(explorer.output.outputs[0]["data"]["image/png"]) != png  # replaced in place
    assert "<b>alignment only</b> at step 20: effective rank 1 of 4, <b>collapsed</b>" in explorer.status.value
    assert "<b>SimSiam</b> at step 40: effective rank 4 of 4, not collapsed" in explorer.status.value
    left, right = explorer.draw().axes
    assert left.get_yscale() == "log" and len(left.lines) == 2
    assert [t.get_text() for t in left.get_legend().get_texts()] == [
        "alignment only (step 20): effective rank 1", "SimSiam (step 40): effective rank 4"]
    markers = [line for line in right.lines if line.get_marker() == "o"]
    assert [(list(m.get_xdata()), list(m.get_ydata())) for m in markers] == [([20], [pytest.approx(1)]),
                                                                             ([40], [pytest.approx(4)])]
    explorer.set(0.5)
    assert explorer.slider.value == 0.5 and "at step 10" in explorer.status.value
    with pytest.raises(ValueError, match="fraction of training in \\[0, 1\\]"):
        explorer.set(1.5)


def test_spectrum_figure_needs_no_ipywidgets(monkeypatch):
    import sys

    from course_lib.explore.spectrum import spectrum_figure

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # any import of it now fails
    fig = spectrum_figure(_spectrum_runs(), 0.5)
    assert len(fig.axes) == 2 and figure_png(fig)[:4] == b"\x89PNG"


@pytest.mark.parametrize("runs, words", [
    ({}, "runs is empty"),
    ({"a": []}, "run 'a' has no snapshots"),
    ({"a": [(0, torch.ones(2, 3))]}, "non-empty 1-D tensor of singular values \\(k,\\), got shape \\(2, 3\\)"),
    ({"a": [(0, torch.ones(3)), (0, torch.ones(3))]}, "steps must increase, got step 0 after step 0"),
    ({"a": [(0, torch.tensor([1.0, float("nan")]))]}, "finite and >= 0"),
    ({"a": [(0,)]}, "expected a pair \\(step, singular values\\)"),
])
def test_spectrum_explorer_explains_bad_runs(runs, words):
    from course_lib.explore.spectrum import SpectrumExplorer, spectrum_at

    with pytest.raises(ValueError, match=words):
        spectrum_at(runs, 0.5)
    with pytest.raises(ValueError, match=words):
        SpectrumExplorer(runs)
