"""The objectives beside SimCLR's (MoCo, SimSiam, alignment only, i-Mix), the collapse metrics, and notebook 08's
experiment helpers: values against direct computations, gradients where they should and should not flow, exact
resume of a MoCo run (key encoder and queue included), and bad input."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from course_lib.contrastive.collapse import Predictor, collapse_metrics, effective_rank, simsiam_loss, spectrum
from course_lib.contrastive.experiments import CollapseMonitor, PLANS, seed_interval
from course_lib.contrastive.losses import info_nce
from course_lib.contrastive.methods import Learner, Method
from course_lib.contrastive.simclr import build_learner, build_model, train_simclr
from tests.test_simclr import TINY, Killed, _same_run, data, fresh_model


# ---------------------------------------------------------------- collapse metrics


def test_effective_rank_runs_from_one_to_k():
    assert effective_rank(torch.tensor([3.0, 0, 0, 0])) == pytest.approx(1.0)
    assert effective_rank(torch.ones(5)) == pytest.approx(5.0)
    assert effective_rank(torch.zeros(3)) == 1.0
    assert 1 < effective_rank(torch.tensor([3.0, 1, 0, 0])) < 2
    with pytest.raises(ValueError, match="1-D"):
        effective_rank(torch.ones(2, 2))


def test_collapse_metrics_of_a_collapsed_and_of_a_spread_batch():
    point = torch.randn(1, 16).repeat(32, 1)
    collapsed = collapse_metrics(point, point)
    assert collapsed["alignment"] == pytest.approx(0, abs=1e-6) and collapsed["uniformity"] == pytest.approx(0, abs=1e-6)
    assert collapsed["effective_rank"] == pytest.approx(1, abs=1e-3) and collapsed["std"] == pytest.approx(0, abs=1e-6)
    spread = torch.eye(16)
    healthy = collapse_metrics(spread, spread)
    assert healthy["effective_rank"] == pytest.approx(16) and healthy["uniformity"] < -1.5
    assert spectrum(spread).tolist() == pytest.approx([1.0] * 16)


def test_simsiam_loss_value_and_stop_gradient():
    gen = torch.Generator().manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(4))
    loss = simsiam_loss(p1, p2, z1, z2)
    expected = -(F.cosine_similarity(p1, z2).mean() + F.cosine_similarity(p2, z1).mean()) / 2
    torch.testing.assert_close(loss, expected)
    grads = torch.autograd.grad(loss, [p1, p2, z1, z2], allow_unused=True)
    assert grads[0] is not None and grads[1] is not None and grads[2] is None and grads[3] is None
    same = torch.randn(4, 3)
    assert simsiam_loss(same, same, same, same).item() == pytest.approx(-1.0)


def test_predictor_and_simsiam_shape_mismatch_say_what_to_do():
    with pytest.raises(ValueError, match=r"projections of size 8.*Predictor\(dim=z.shape\[1\]"):
        Predictor(8, 2)(torch.randn(4, 6))
    with pytest.raises(ValueError, match="share one shape"):
        simsiam_loss(torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match="dim >= 1"):
        Predictor(0, 4)


# ---------------------------------------------------------------- the Learner of each method


@pytest.mark.parametrize("bad, match", [(dict(name="byol"), "unknown method"), (dict(mix="mixup"), "i-Mix objective"),
                                        (dict(name="imix", mix="cut"), "mix must be one of"),
                                        (dict(name="moco", key_momentum=1.0), r"\[0, 1\)"),
                                        (dict(name="imix", mix_alpha=0.0), "mix_alpha > 0")])
def test_method_refuses_bad_settings(bad, match):
    with pytest.raises(ValueError, match=match):
        Method(**bad)


def _views(n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=gen), torch.rand(n, 3, 8, 8, generator=gen)


@pytest.mark.parametrize("method", [Method(), Method("moco", queue_size=32), Method("simsiam"), Method("alignment"),
                                    Method("imix"), Method("imix", mix="mixup"), Method("imix", mix="cutmix")])
def test_every_method_trains_the_model_and_only_the_model(method):
    learner = build_learner(fresh_model(), replace(TINY, method=method))
    v1, v2 = _views()
    loss = learner.loss(v1, v2, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in learner.model.parameters())
    if method.name == "moco":
        assert all(p.grad is None and not p.requires_grad for p in learner.key_model.parameters())
        assert int(learner.queue.ptr) == 2 * len(v1)
    if method.name == "simsiam":
        assert all(p.grad is not None for p in learner.predictor.parameters())


def test_imix_without_mixing_is_one_directional_info_nce():
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    learner = Learner(model, Method("imix"), temperature=0.3)
    v1, v2 = _views()
    _, z = model(torch.cat([v1, v2]))
    torch.testing.assert_close(learner.loss(v1, v2), info_nce(*z.chunk(2), 0.3))


def test_moco_queue_size_must_hold_whole_steps_of_keys():
    with pytest.raises(ValueError, match=r"2 x batch_size"):
        build_learner(fresh_model(), replace(TINY, method=Method("moco", queue_size=20)))


def test_moco_run_resumes_exactly_with_its_key_encoder_and_queue(tmp_path):
    cfg = replace(TINY, method=Method("moco", queue_size=32, key_momentum=0.9))
    images, labels = data()
    straight = train_simclr(fresh_model(cfg), images, cfg, labels, images, labels, progress=False)

    def kill(history):
        if history.step == 3:
            raise Killed

    with pytest.raises(Killed):
        train_simclr(fresh_model(cfg), images, cfg, labels, images, labels, checkpoint=tmp_path / "m.pt",
                     checkpoint_every_s=0.0, callback=kill, progress=False)
    torch.manual_seed(7)
    resumed = train_simclr(build_model(cfg), images, cfg, labels, images, labels, checkpoint=tmp_path / "m.pt",
                           progress=False)
    _same_run(resumed, straight)


# ---------------------------------------------------------------- notebook 08's helpers


def test_seed_interval_is_the_student_t_interval():
    mean, half = seed_interval([0.40, 0.42, 0.44])
    assert mean == pytest.approx(0.42)
    assert half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 runs"):
        seed_interval([0.4])


def test_collapse_monitor_records_metrics_and_spectra_paired_with_steps():
    cfg = replace(TINY, method=Method("alignment"))
    images, labels = data()
    model = fresh_model(cfg)
    monitor = CollapseMonitor(model, images, cfg.views, n=16)
    history = train_simclr(model, images, cfg, labels, images, labels, metrics=monitor, progress=False)
    assert [e["step"] for e in history.evals] == [3, 6, 9]
    assert all({"knn", "alignment", "uniformity", "effective_rank", "std"} <= set(e) for e in history.evals)
    snapshots = monitor.snapshots(history)
    assert [s for s, _ in snapshots] == [3, 6, 9] and all(v.shape == (8,) for _, v in snapshots)
    assert model.training


def test_every_plan_fits_its_moco_queue_and_grid():
    for name, plan in PLANS.items():
        assert plan.queue_size % (2 * plan.small_batch) == 0, name
        assert len(plan.mix_seeds) >= 2 and plan.temperatures and plan.batches, name


@pytest.mark.parametrize("method", [Method(), Method("moco", queue_size=48), Method("simsiam"), Method("alignment"),
                                    Method("imix", mix="mixup")], ids=lambda m: m.name)
def test_a_training_step_never_reads_values_to_validate_them(method, monkeypatch):
    """On a GPU, torch.isfinite(z).all() in a loss makes the CPU wait for every step; the run checks the loss."""
    def isfinite(*args, **kwargs):
        raise AssertionError("torch.isfinite in a training step: one host sync per step on a GPU")

    cfg = replace(TINY, method=method, epochs=1)
    model, (images, _) = fresh_model(cfg), data()
    monkeypatch.setattr(torch, "isfinite", isfinite)
    history = train_simclr(model, images, cfg, progress=False)
    assert len(history.losses) == 3


def test_skip_finite_check_is_scoped_and_direct_calls_still_check():
    from course_lib.contrastive.losses import nt_xent, skip_finite_check

    z = torch.randn(8, 4)
    z[0, 0] = float("nan")
    with skip_finite_check():
        assert torch.isnan(nt_xent(z, 0.5))
    with pytest.raises(ValueError, match="NaN or inf"):
        nt_xent(z, 0.5)
