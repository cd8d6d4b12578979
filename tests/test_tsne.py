"""t-SNE: the torch path against sklearn (affinities, gradient, map quality), input errors, caching, auto."""

import numpy as np
import pytest
import torch
from sklearn.manifold import _t_sne
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

from course_lib import tsne as T
from course_lib.similarity import map_knn_accuracy, trustworthiness


def mixture(n: int, seed: int = 0, dim: int = 32, classes: int = 5):
    """Seeded Gaussian mixture with overlapping classes (each class 3 sub-clusters): (n, dim), (n,)."""
    gen = torch.Generator().manual_seed(seed)
    centres = 0.45 * torch.randn(classes, dim, generator=gen)
    offsets = 0.4 * torch.randn(classes, 3, dim, generator=gen)
    labels = torch.arange(n) % classes
    sub = torch.randint(3, (n,), generator=gen)
    return centres[labels] + offsets[labels, sub] + torch.randn(n, dim, generator=gen), labels


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    T.clear_cache()
    yield
    T.clear_cache()


def test_knn_affinities_match_sklearn():
    x, _ = mixture(150)
    k = int(3 * 10 + 1)
    graph = NearestNeighbors(n_neighbors=k).fit(x.numpy()).kneighbors_graph(mode="distance")
    graph.data **= 2
    want = _t_sne._joint_probabilities_nn(graph, 10, 0).toarray()
    got = T.joint_probabilities(x.double(), 10).double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-8)
    assert np.allclose(got, got.T) and abs(got.sum() - 1) < 1e-5 and np.all(np.diag(got) == 0)


def test_dense_affinities_match_sklearn_exact():
    x, _ = mixture(120, seed=1)
    want = _t_sne.squareform(_t_sne._joint_probabilities(pairwise_distances(x.numpy(), squared=True), 20, 0))
    got = T.joint_probabilities(x, 20, n_neighbours=len(x) - 1).double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-7)


def test_gradient_and_kl_match_sklearn():
    x, _ = mixture(100, seed=2)
    P = T.joint_probabilities(x, 15, n_neighbours=len(x) - 1)
    y = 3 * torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    kl_want, grad_want = _t_sne._kl_divergence(y.double().numpy().ravel(), _t_sne.squareform(P.double().numpy(), checks=False), 1, 100, 2)
    grad, kl = T.kl_gradient(y, P, compute_error=True)
    np.testing.assert_allclose(grad.double().numpy().ravel(), grad_want, rtol=1e-3, atol=1e-6 * np.abs(grad_want).max())
    assert abs(float(kl) - kl_want) < 1e-3


def test_pca_init_matches_sklearn_scaling():
    from sklearn.decomposition import PCA

    x, _ = mixture(200, seed=3)
    want = PCA(n_components=2).fit_transform(x.double().numpy())
    want = want / want[:, 0].std() * 1e-4
    got = T.pca_init(x).double().numpy()
    np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=1e-3, atol=1e-9)  # signs are a convention
    assert got.dtype == np.float64 and abs(got[:, 0].std() - 1e-4) < 1e-9


def test_torch_quality_matches_sklearn():
    """The fast path must map as well as the reference, on a fixed dataset: trustworthiness within 0.01, 2-D 10-NN accuracy within 2 points."""
    x, labels = mixture(400, seed=0)
    ref = T.tsne(x, impl="sklearn", cache=False)
    got = T.tsne(x, impl="torch", cache=False)
    assert got.shape == (400, 2) and got.dtype == torch.float32 and torch.isfinite(got).all()
    trust_ref, trust = trustworthiness(x, ref), trustworthiness(x, got)
    acc_ref, acc = map_knn_accuracy(ref, labels), map_knn_accuracy(got, labels)
    assert trust >= trust_ref - 0.01, (trust, trust_ref)
    assert acc >= acc_ref - 0.02, (acc, acc_ref)
    assert trust > 0.8 and acc > 0.6  # the map keeps real structure, not just "as bad as the reference"


@pytest.mark.parametrize("bad, match", [
    (torch.randn(100), "shape \\(N, D\\)"),
    (torch.randn(100, 3, 2), "shape \\(N, D\\)"),
    (torch.tensor([[float("nan"), 1.0]] * 100), "NaN"),
    (torch.randn(50, 4), "at least 3 x perplexity = 90"),
])
def test_bad_input_is_explained(bad, match):
    with pytest.raises(ValueError, match=match):
        T.tsne(bad, perplexity=30)


def test_bad_arguments_are_explained():
    x = torch.randn(100, 4)
    with pytest.raises(ValueError, match="expected one of auto, sklearn, torch"):
        T.tsne(x, impl="cuda")
    with pytest.raises(ValueError, match="perplexity must be positive"):
        T.tsne(x, perplexity=0)
    with pytest.raises(ValueError, match="max_iter must be at least 250"):
        T.tsne(x, perplexity=5, max_iter=100)
    with pytest.raises(TypeError, match="floating-point"):
        T.tsne(torch.arange(400).reshape(100, 4), perplexity=5)


def test_auto_choice_follows_device_and_size():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert T.choose_impl(T.CPU_TORCH_MAX_POINTS, cpu) == "torch"
    assert T.choose_impl(T.CPU_TORCH_MAX_POINTS + 1, cpu) == "sklearn"
    # On a GPU, torch where P (4 N^2 bytes) fits in 80% of the free memory, else sklearn: 10 GB at 50,000 points
    assert T.choose_impl(100_000, cuda, free_bytes=80 * 2**30) == "torch"
    assert T.choose_impl(50_000, cuda, free_bytes=8 * 2**30) == "sklearn"
    assert T.torch_tsne_bytes(50_000) >= 10 * 10**9


def _count_runs(monkeypatch):
    calls = []
    real = T.tsne_torch
    monkeypatch.setattr(T, "tsne_torch", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_cache_reuses_maps_by_content(monkeypatch):
    calls = _count_runs(monkeypatch)
    x = torch.randn(60, 5, generator=torch.Generator().manual_seed(0))
    first = T.tsne(x, perplexity=5, impl="torch", max_iter=250)
    again = T.tsne(x.clone(), perplexity=5, impl="torch", max_iter=250)  # same bytes, another tensor
    assert len(calls) == 1 and torch.equal(first, again)
    again.zero_()  # the cache hands out copies
    assert torch.equal(T.tsne(x, perplexity=5, impl="torch", max_iter=250), first)
    T.tsne(x, perplexity=6, impl="torch", max_iter=250)  # other parameters: computed again
    y = x.clone()
    y[0, 0] += 1e-3
    T.tsne(y, perplexity=5, impl="torch", max_iter=250)  # other bytes: computed again
    assert len(calls) == 3
    T.tsne(x, perplexity=5, impl="torch", max_iter=250, cache=False)
    assert len(calls) == 4


def test_disk_cache_survives_clearing_memory(monkeypatch, tmp_path):
    calls = _count_runs(monkeypatch)
    x = torch.randn(60, 5, generator=torch.Generator().manual_seed(1))
    first = T.tsne(x, perplexity=5, impl="torch", max_iter=250, disk_cache=True)
    assert len(list((tmp_path / "cache" / "tsne").glob("*.pt"))) == 1
    T.clear_cache()
    second = T.tsne(x, perplexity=5, impl="torch", max_iter=250, disk_cache=True)
    assert len(calls) == 1 and torch.equal(first, second)
    T.clear_cache(disk=True)
    assert not list((tmp_path / "cache" / "tsne").glob("*.pt"))


def test_accepts_numpy_and_returns_on_input_device():
    x = np.random.default_rng(0).normal(size=(60, 4))
    y = T.tsne(x, perplexity=5, impl="torch", max_iter=250)
    assert isinstance(y, torch.Tensor) and y.shape == (60, 2) and y.dtype == torch.float32


def test_row_blocks_give_the_same_affinities_and_gradient(monkeypatch):
    """Large N is processed in row blocks (memory); the blocks must not change P or the gradient."""
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(4))
    y = torch.randn(300, 2, generator=torch.Generator().manual_seed(5))
    P_whole = T.joint_probabilities(x, 20)
    grad_whole, kl_whole = T.kl_gradient(y, P_whole, compute_error=True)
    monkeypatch.setitem(T.CHUNK_BYTES, "cpu", 4 * 300 * 37)  # blocks of 37 rows, the last one partial
    P_blocks = T.joint_probabilities(x, 20)
    grad_blocks, kl_blocks = T.kl_gradient(y, P_blocks, compute_error=True)
    torch.testing.assert_close(P_blocks, P_whole, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(grad_blocks, grad_whole, rtol=1e-4, atol=1e-8)
    assert abs(float(kl_blocks) - float(kl_whole)) < 1e-4


@pytest.mark.parametrize("impl", ["sklearn", "torch", "auto"])
@pytest.mark.parametrize("scale", [0.0, 1e-9])
def test_collapsed_features_give_a_degenerate_map_with_a_warning_not_a_crash(impl, scale):
    """A collapsed encoder maps every image to one point: sklearn's PCA init would kill the process."""
    x = torch.ones(60, 8) * 3.0 + scale * torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="collapsed encoder"):
        y = T.tsne(x, perplexity=5, impl=impl, cache=False)
    assert y.shape == (60, 2) and torch.equal(y, torch.zeros(60, 2))
