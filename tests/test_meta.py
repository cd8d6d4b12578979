"""course_lib.meta: MAML's meta-gradient against independent float64 maths, vmap against the loop,
ProtoNet, Reptile, configuration errors, evaluation and resumable training."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from course_lib.checkpoint import CheckpointError
from course_lib.data import Episodes
from course_lib.meta import (MetaConfig, evaluate, mean_ci95, meta_loss, meta_train, outer_lr, protonet_loss,
                             prototypes, reptile_direction, squared_distances)
from course_lib.meta.sinusoid import pretrain_baseline, sample_sinusoids, sinusoid_sampler
from course_lib.meta.models import DOWNSAMPLING, BatchStatNorm2d, Conv4, SinusoidMLP

torch.set_num_threads(1)


class TinyNet(nn.Module):
    """2 -> 3 (tanh) -> 1: smooth, so every block of the Hessian is non-zero."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(2, 3), nn.Linear(3, 1)

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(x)))


def _tiny_problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    net = TinyNet().double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    d = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    tasks = Episodes(d(1, 5, 2), d(1, 5, 1), d(1, 7, 2), d(1, 7, 1))
    return net, tasks


def _flat_losses(net, tasks):
    """Support and query losses as functions of ONE flat parameter vector, written without the library."""
    shapes = [p.shape for p in net.parameters()]
    sizes = [p.numel() for p in net.parameters()]

    def unflat(theta):
        w1, b1, w2, b2 = (t.view(s) for t, s in zip(theta.split(sizes), shapes))
        return lambda x: torch.tanh(x @ w1.T + b1) @ w2.T + b2

    support = lambda th: ((unflat(th)(tasks.x_support[0]) - tasks.y_support[0]) ** 2).mean()  # noqa: E731
    query = lambda th: ((unflat(th)(tasks.x_query[0]) - tasks.y_query[0]) ** 2).mean()  # noqa: E731
    theta = torch.cat([p.detach().flatten() for p in net.parameters()])
    return theta, support, query


def _meta_grad(net, tasks, first_order, impl, inner_lr=0.3, inner_steps=1):
    loss, _ = meta_loss(net, tasks, inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order,
                        loss="mse", impl=impl)
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(net.parameters()))])


@pytest.mark.parametrize("impl", ["vmap", "loop"])
def test_second_order_meta_gradient_equals_explicit_hessian_formula(impl):
    net, tasks = _tiny_problem()
    alpha = 0.3
    theta, support, query = _flat_losses(net, tasks)
    g_s = torch.autograd.functional.jacobian(support, theta)
    hess = torch.autograd.functional.hessian(support, theta)  # (P, P), float64
    g_q = torch.autograd.functional.jacobian(query, theta - alpha * g_s)
    expected = (torch.eye(len(theta), dtype=torch.float64) - alpha * hess) @ g_q
    got = _meta_grad(net, tasks, first_order=False, impl=impl, inner_lr=alpha)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # first-order MAML drops exactly the Hessian term
    fo = _meta_grad(net, tasks, first_order=True, impl=impl, inner_lr=alpha)
    torch.testing.assert_close(fo, g_q, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got - fo, -alpha * hess @ g_q, rtol=1e-9, atol=1e-12)
    assert (got - fo).abs().max() > 1e-3  # the term is not negligible here, so the test can fail


def test_two_step_meta_gradient_matches_finite_differences():
    net, tasks = _tiny_problem(seed=1)
    theta, support, query = _flat_losses(net, tasks)

    def meta_objective(th):  # two inner SGD steps, then the query loss: a plain function of theta
        for _ in range(2):
            th = th - 0.2 * torch.autograd.functional.jacobian(support, th)
        return query(th)

    eps = 1e-6
    fd = torch.stack([(meta_objective(theta + eps * e) - meta_objective(theta - eps * e)) / (2 * eps)
                      for e in torch.eye(len(theta), dtype=torch.float64)])
    got = _meta_grad(net, tasks, first_order=False, impl="vmap", inner_lr=0.2, inner_steps=2)
    torch.testing.assert_close(got, fd, rtol=1e-6, atol=1e-8)


def _omniglot_like(t=3, n_way=3, k=2, q=3, side=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Episodes(torch.rand(t, n_way * k, 1, side, side, generator=gen), torch.arange(n_way).repeat_interleave(k).repeat(t, 1),
                 torch.rand(t, n_way * q, 1, side, side, generator=gen), torch.arange(n_way).repeat_interleave(q).repeat(t, 1))


@pytest.mark.parametrize("downsample", DOWNSAMPLING)
@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_equals_loop_on_conv4(first_order, downsample):
    torch.manual_seed(0)
    net = Conv4(n_way=3, channels=4, downsample=downsample).double()
    tasks = _omniglot_like()
    tasks = Episodes(tasks.x_support.double(), tasks.y_support, tasks.x_query.double(), tasks.y_query)
    out = {}
    for impl in ("vmap", "loop"):
        loss, acc = meta_loss(net, tasks, inner_lr=0.4, inner_steps=2, first_order=first_order, impl=impl)
        out[impl] = (loss, acc, torch.autograd.grad(loss, list(net.parameters())))
    torch.testing.assert_close(out["vmap"][0], out["loop"][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["vmap"][1], out["loop"][1])
    for gv, gl in zip(out["vmap"][2], out["loop"][2]):
        torch.testing.assert_close(gv, gl, rtol=1e-9, atol=1e-11)


def test_conv4_downsamplings_keep_channels_features():
    x = torch.rand(2, 1, 28, 28)
    for downsample, side in (("pool", 1), ("stride", 2)):
        net = Conv4(n_way=5, channels=8, downsample=downsample)
        assert net.encoder(x).shape == (2, 8, side, side)  # 28 -> 14 -> 7 -> 3 -> 1, or 28 -> 14 -> 7 -> 4 -> 2
        assert net(x).shape == (2, 5) and net(x, head=False).shape == (2, 8)
    with pytest.raises(ValueError, match="downsample must be one of"):
        Conv4(5, 8, downsample="avg")


def test_batch_stat_norm_matches_torch_batchnorm():
    x = torch.randn(6, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    ours, theirs = BatchStatNorm2d(4).double(), nn.BatchNorm2d(4, track_running_stats=False).double()
    with torch.no_grad():
        for m in (ours, theirs):
            m.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(1))
            m.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(2))
    w = torch.randn(6, 4, 5, 5, dtype=torch.float64)
    a, b = ours(x), theirs(x)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(torch.autograd.grad((a * w).sum(), x)[0], torch.autograd.grad((b * w).sum(), x)[0])


@pytest.mark.parametrize("impl", ["vmap", "loop"])
def test_gradients_reach_every_meta_parameter(impl):
    torch.manual_seed(0)
    net = Conv4(n_way=3, channels=4)
    loss, _ = meta_loss(net, _omniglot_like(), inner_lr=0.4, inner_steps=1, impl=impl)
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no meta-gradient reaches {name}"


def test_reptile_vmap_equals_loop_and_moves_towards_adapted():
    torch.manual_seed(0)
    net = SinusoidMLP(hidden=8).double()  # float64: the two paths sum in different orders
    tasks = Episodes(*(t.double() for t in sample_sinusoids(4, 5, 5, torch.Generator().manual_seed(0))[0]))
    a = reptile_direction(net, tasks, inner_lr=0.01, inner_steps=3, loss="mse", impl="vmap")
    b = reptile_direction(net, tasks, inner_lr=0.01, inner_steps=3, loss="mse", impl="loop")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-10, atol=1e-12)
    assert sum(v.abs().sum() for v in a.values()) > 0


def test_protonet_prototypes_distances_and_separable_toy_set():
    feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 10.0]])
    protos = prototypes(feats, torch.tensor([0, 0, 1, 1]), 2)
    torch.testing.assert_close(protos, torch.tensor([[1.0, 0.0], [11.0, 10.0]]))
    q = torch.tensor([[1.0, 1.0], [3.0, 4.0]])
    torch.testing.assert_close(squared_distances(q, protos), torch.cdist(q, protos) ** 2, rtol=1e-5, atol=1e-4)

    class Identity(nn.Module):  # features = inputs; one parameter so the functional code has a dict
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x, head=True):
            return self.scale * x

    gen = torch.Generator().manual_seed(0)
    centres = 10 * torch.randn(5, 4, 1, 3, generator=gen)  # 4 classes far apart, per task
    noise = lambda n: 0.5 * torch.randn(5, 4, n, 3, generator=gen)  # noqa: E731
    xs, xq = (centres + noise(2)).reshape(5, 8, 3), (centres + noise(6)).reshape(5, 24, 3)
    tasks = Episodes(xs, torch.arange(4).repeat_interleave(2).repeat(5, 1), xq, torch.arange(4).repeat_interleave(6).repeat(5, 1))
    for impl in ("vmap", "loop"):
        loss, acc = protonet_loss(Identity(), tasks, impl=impl)
        assert acc.min() == 1.0 and loss < 0.1


def test_protonet_vmap_equals_loop():
    torch.manual_seed(0)
    net = Conv4(n_way=None, channels=4).double()
    t = _omniglot_like()
    t = Episodes(t.x_support.double(), t.y_support, t.x_query.double(), t.y_query)
    lv, av = protonet_loss(net, t, "vmap")
    ll, al = protonet_loss(net, t, "loop")
    torch.testing.assert_close(lv, ll)
    torch.testing.assert_close(av, al)
    gv = torch.autograd.grad(lv, list(net.parameters()))
    gl = torch.autograd.grad(ll, list(net.parameters()))
    for a, b in zip(gv, gl):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kwargs, match", [
    (dict(inner_lr=0.4, inner_steps=0), "inner_steps must be an int >= 1"),
    (dict(inner_lr=0.4, inner_steps=1.5), "inner_steps must be an int >= 1"),
    (dict(inner_lr=0.0, inner_steps=1), "inner_lr must be > 0"),
    (dict(inner_lr=-0.1, inner_steps=1), "inner_lr must be > 0"),
])
def test_bad_inner_loop_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        meta_loss(Conv4(3, 4), _omniglot_like(), **kwargs)


def test_bad_shapes_and_configs_raise():
    t = _omniglot_like()
    net = Conv4(3, 4)
    with pytest.raises(ValueError, match="same number of tasks"):
        meta_loss(net, Episodes(t.x_support[:2], t.y_support[:2], t.x_query, t.y_query), inner_lr=0.4, inner_steps=1)
    with pytest.raises(ValueError, match="labels must match inputs"):
        meta_loss(net, Episodes(t.x_support, t.y_support[:, :-1], t.x_query, t.y_query), inner_lr=0.4, inner_steps=1)
    with pytest.raises(ValueError, match="same shape per example"):
        meta_loss(net, Episodes(t.x_support, t.y_support, t.x_query[..., :4], t.y_query), inner_lr=0.4, inner_steps=1)
    with pytest.raises(ValueError, match="impl must be"):
        meta_loss(net, t, inner_lr=0.4, inner_steps=1, impl="fast")
    with pytest.raises(ValueError, match="method must be one of"):
        MetaConfig(method="mam")
    with pytest.raises(ValueError, match="inner_steps"):
        MetaConfig(inner_steps=0)
    with pytest.raises(ValueError, match="meta_batch"):
        MetaConfig(meta_batch=0)
    for bad in (float("nan"), float("inf"), 0.0, -1e-3):
        with pytest.raises(ValueError, match="meta_lr must be a finite number > 0"):
            MetaConfig(meta_lr=bad)
    with pytest.raises(ValueError, match="expects images"):
        Conv4(3, 4)(torch.zeros(2, 28, 28))


def test_mean_ci95():
    s = mean_ci95(torch.tensor([0.0, 1.0] * 50))
    assert s.mean == pytest.approx(0.5)
    assert s.ci95 == pytest.approx(1.96 * math.sqrt(0.25 * 100 / 99) / 10)
    assert "±" in str(s)
    with pytest.raises(ValueError):
        mean_ci95(torch.tensor([1.0]))


def test_sinusoid_tasks_follow_the_paper_ranges():
    tasks, amp, phase = sample_sinusoids(200, 10, 5, torch.Generator().manual_seed(0))
    assert tasks.x_support.shape == (200, 10, 1) and tasks.y_query.shape == (200, 5, 1)
    assert amp.min() >= 0.1 and amp.max() <= 5.0 and phase.min() >= 0 and phase.max() <= math.pi
    assert tasks.x_support.abs().max() <= 5.0
    torch.testing.assert_close(tasks.y_support, amp[:, None, None] * torch.sin(tasks.x_support - phase[:, None, None]))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_meta_training_resumes_exactly_and_only_with_its_config(tmp_path, schedule):
    cfg = MetaConfig(method="maml", inner_lr=0.01, inner_steps=1, eval_inner_steps=5, meta_lr=3e-3, meta_batch=10,
                     steps=6, loss="mse", lr_schedule=schedule)
    sample = sinusoid_sampler(5, 5)

    torch.manual_seed(0)
    straight = SinusoidMLP(hidden=16)
    full = meta_train(straight, sample, cfg, generator=torch.Generator().manual_seed(1), progress=False)

    torch.manual_seed(0)
    first = SinusoidMLP(hidden=16)
    ckpt = tmp_path / "maml.pt"
    meta_train(first, sample, cfg, generator=torch.Generator().manual_seed(1), checkpoint=ckpt, stop_after=3,
               setup={"n_query": "5"}, progress=False)
    resumed = SinusoidMLP(hidden=16)  # a fresh process would start from other weights and another generator
    hist = meta_train(resumed, sample, cfg, generator=torch.Generator().manual_seed(99), checkpoint=ckpt,
                      setup={"n_query": "5"}, progress=False)
    assert hist.step == 6 and hist.per_step == full.per_step and set(hist.per_step) == {"loss", "metric"}
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for other, field in ((replace(cfg, method="reptile"), "method"), (replace(cfg, inner_lr=0.02), "inner_lr"),
                         (replace(cfg, steps=7), "steps"), (replace(cfg, budget_s=60.0), "budget_s")):
        with pytest.raises(CheckpointError, match=f"{field}: "):
            meta_train(SinusoidMLP(16), sample, other, generator=torch.Generator(), checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointError, match="setup.n_query: 5 in the checkpoint, 15 now"):
        meta_train(SinusoidMLP(16), sample, cfg, generator=torch.Generator(), checkpoint=ckpt, setup={"n_query": "15"},
                   progress=False)
    # more test-time steps do not change the training: the run resumes (and is done)
    hist = meta_train(resumed, sample, replace(cfg, eval_inner_steps=9), generator=torch.Generator(), checkpoint=ckpt,
                      setup={"n_query": "5"}, progress=False)
    assert hist.step == 6


def test_outer_lr_follows_the_schedule_over_the_planned_steps():
    constant = MetaConfig(meta_lr=1e-3, steps=100)
    assert outer_lr(constant, 99, 100) == 1e-3
    cosine = replace(constant, lr_schedule="cosine")
    assert outer_lr(cosine, 0, 100) == pytest.approx(1e-3)
    assert outer_lr(cosine, 50, 100) == pytest.approx(0.5e-3)
    assert outer_lr(cosine, 25, 50) == pytest.approx(0.5e-3)  # a budget that planned 50 steps ends on time
    assert outer_lr(cosine, 100, 100) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        MetaConfig(lr_schedule="step")


def test_evaluate_averages_the_per_task_metric_of_fresh_tasks():
    torch.manual_seed(0)
    net = SinusoidMLP(hidden=16)
    pretrain_baseline(net, 20, generator=torch.Generator().manual_seed(0))
    cfg = MetaConfig(method="maml", inner_lr=0.01, eval_inner_steps=2, loss="mse")
    score = evaluate(net, sinusoid_sampler(10, 10), cfg, n_tasks=30, batch=20, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)  # the same draws: 20 tasks, then 10
    per_task = torch.cat([meta_loss(net, sinusoid_sampler(10, 10)(t, gen), inner_lr=0.01, inner_steps=2, loss="mse",
                                    impl="loop")[1] for t in (20, 10)])
    assert score.n_tasks == 30 and not score.percent
    assert score.mean == pytest.approx(per_task.double().mean().item(), rel=1e-5)
    assert score.ci95 == pytest.approx(1.96 * per_task.double().std().item() / math.sqrt(30), rel=1e-4)


def test_checks_reject_first_order_gradients_and_a_meta_gradient_without_the_hessian():
    """The worked solutions pass (tests/test_checks.py runs the notebooks' own); these are the classic misses."""
    from course_lib.checks import CheckFailed, check_inner_loop, check_linear_meta_gradient
    from course_lib.meta import sgd_steps

    def always_first_order(params, loss_fn, inner_lr, inner_steps, first_order=False):
        return sgd_steps(params, loss_fn, inner_lr=inner_lr, inner_steps=inner_steps, first_order=True)

    with pytest.raises(CheckFailed, match="gradient"):
        check_inner_loop(always_first_order)
    with pytest.raises(CheckFailed, match="wrong values"):  # the query gradient at w, without adapting
        check_linear_meta_gradient(lambda w, xs, ys, xq, yq, a: 2 / len(yq) * xq.T @ (xq @ w - yq))


def test_graph_memory_orders_second_order_first_order_reptile():
    from course_lib.meta import graph_bytes, step_cost

    torch.manual_seed(0)
    net = SinusoidMLP(hidden=16)
    tasks = sinusoid_sampler(5, 5)(4, torch.Generator().manual_seed(0))
    sizes = {}
    for fo in (False, True):
        loss, _ = meta_loss(net, tasks, inner_lr=0.01, inner_steps=3, first_order=fo, loss="mse")
        sizes[fo] = graph_bytes(loss)
    assert sizes[False] > 2 * sizes[True] > 0
    before = [p.detach().clone() for p in net.parameters()]
    cost = step_cost(net, tasks, MetaConfig(method="reptile", inner_lr=0.01, inner_steps=3, loss="mse"), repeats=1)
    assert cost["graph_MB"] == 0 and cost["seconds"] > 0 and cost["peak_MB"] is None
    cost = step_cost(net, tasks, MetaConfig(method="maml", inner_lr=0.01, inner_steps=3, loss="mse"), repeats=1)
    assert cost["graph_MB"] == pytest.approx(sizes[False] / 2**20)
    for a, b in zip(before, net.parameters()):  # measuring does not train the model
        torch.testing.assert_close(a, b, rtol=0, atol=0)
