"""course_lib.similarity against independent computations: torch.cdist, and a brute-force sort of every cosine."""

import pytest
import torch

from course_lib.similarity import cosine_topk, squared_distances

SHAPES = [(1, 1, 1), (7, 13, 5), (129, 3, 257), (33, 64, 2)]  # (n, m, D): odd sizes, one row, wide and narrow


@pytest.mark.parametrize("n, m, d", SHAPES)
def test_squared_distances_value_and_gradient_match_cdist(n, m, d):
    gen = torch.Generator().manual_seed(n + m + d)
    a = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(m, d, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(n, m, generator=gen, dtype=torch.float64)  # a generic upstream gradient
    got = squared_distances(a, b)
    want = torch.cdist(a, b) ** 2
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    grad_got = torch.autograd.grad((got * weights).sum(), (a, b))
    grad_want = torch.autograd.grad((want * weights).sum(), (a, b))
    for g, w in zip(grad_got, grad_want):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10)


def test_squared_distances_float32_is_never_negative_and_stays_on_the_graph():
    a = torch.randn(50, 16) * 100
    d = squared_distances(a, a)  # identical rows: the expansion rounds to about +-1e-3 around 0
    assert d.min() >= 0 and d.dtype == torch.float32
    torch.testing.assert_close(d, torch.cdist(a.double(), a.double()).float() ** 2, rtol=1e-4, atol=0.5)
    a.requires_grad_(True)
    squared_distances(a, a[:3].detach()).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


def test_squared_distances_explains_bad_shapes():
    with pytest.raises(ValueError, match="same D"):
        squared_distances(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="reshape"):
        squared_distances(torch.zeros(3, 4, 1), torch.zeros(3, 4))


def _brute_force(queries, keys, k, exclude=None):
    """Every cosine in float64, sorted in full; the excluded key of each query dropped."""
    q = queries.double() / queries.double().norm(dim=1, keepdim=True)
    key = keys.double() / keys.double().norm(dim=1, keepdim=True)
    sims = q @ key.T  # (m, n)
    if exclude is not None:
        sims[torch.arange(len(q)), exclude] = -float("inf")
    order = sims.argsort(dim=1, descending=True)[:, :k]
    return sims.gather(1, order), order


@pytest.mark.parametrize("m, n, d, k, batch", [(1, 1, 3, 1, 8), (13, 50, 6, 7, 5), (100, 37, 129, 37, 33),
                                               (9, 200, 2, 1, 1)])
def test_cosine_topk_matches_a_brute_force_sort(m, n, d, k, batch):
    gen = torch.Generator().manual_seed(m * n)
    queries = torch.randn(m, d, generator=gen) * torch.rand(m, 1, generator=gen) * 10  # scale must not matter
    keys = torch.randn(n, d, generator=gen) * 3
    sims, idx = cosine_topk(queries, keys, k, batch_size=batch)
    want_sims, want_idx = _brute_force(queries, keys, k)
    assert sims.shape == idx.shape == (m, k) and sims.dtype == torch.float32 and idx.dtype == torch.int64
    assert torch.equal(idx, want_idx)
    torch.testing.assert_close(sims.double(), want_sims, rtol=0, atol=1e-6)


def test_cosine_topk_excludes_one_key_per_query():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(41, 8, generator=gen)
    sims, idx = cosine_topk(x, x, 40, exclude=torch.arange(41), batch_size=16)
    want_sims, want_idx = _brute_force(x, x, 40, torch.arange(41))
    assert torch.equal(idx, want_idx) and not (idx == torch.arange(41)[:, None]).any()
    torch.testing.assert_close(sims.double(), want_sims, rtol=0, atol=1e-6)
    other = torch.randint(0, 41, (5,), generator=gen)  # any key can be the excluded one
    _, idx = cosine_topk(x[:5], x, 3, exclude=other)
    assert torch.equal(idx, _brute_force(x[:5], x, 3, other)[1])


def test_cosine_topk_edge_cases_and_errors():
    sims, idx = cosine_topk(torch.zeros(0, 4), torch.randn(6, 4), 2)
    assert sims.shape == idx.shape == (0, 2)
    keys = torch.randn(6, 4)
    with pytest.raises(ValueError, match="between 1 and 6"):
        cosine_topk(keys, keys, 7)
    with pytest.raises(ValueError, match="between 1 and 5 .*less the excluded one"):
        cosine_topk(keys, keys, 6, exclude=torch.arange(6))
    with pytest.raises(ValueError, match="one key index per query"):
        cosine_topk(keys, keys, 2, exclude=torch.arange(5))
    with pytest.raises(ValueError, match="same D"):
        cosine_topk(torch.randn(2, 3), keys, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_results_follow_the_device_and_match_the_cpu():
    gen = torch.Generator().manual_seed(5)
    queries, keys = torch.randn(300, 64, generator=gen), torch.randn(1000, 64, generator=gen)
    sims, idx = cosine_topk(queries.cuda(), keys.cuda(), 10, exclude=torch.arange(300), batch_size=128)
    want_sims, want_idx = cosine_topk(queries, keys, 10, exclude=torch.arange(300))
    assert sims.device.type == idx.device.type == "cuda"
    torch.testing.assert_close(sims.cpu(), want_sims, rtol=0, atol=1e-4)  # TF32 may reorder near-ties: compare values
    d = squared_distances(queries.cuda().double(), keys.cuda().double())
    torch.testing.assert_close(d.cpu(), squared_distances(queries.double(), keys.double()))
