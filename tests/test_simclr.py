"""The SimCLR loop: exact resume on CPU (epoch and mid-epoch), the time budget, schedule and LARS."""

import math
from dataclasses import replace

import pytest
import torch

from course_lib.contrastive.views import ViewConfig
from course_lib.checkpoint import CheckpointError, load_checkpoint
from course_lib.optim import LARS, learning_rate
from course_lib.contrastive.simclr import PRESETS, SimCLRConfig, build_model, train_simclr
from course_lib.runtime import pick

TINY = SimCLRConfig(
    arch="small_cnn", width=4, proj_hidden=16, proj_dim=8, epochs=3, batch_size=8, optimizer="sgd", lr=0.1,
    warmup_epochs=1, temperature=0.5, views=ViewConfig(size=8, scale=(0.3, 1.0)), knn_every=1, live_plot=False,
)


def data(n=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=gen), torch.arange(n) % 3


def fresh_model(cfg=TINY):
    torch.manual_seed(0)
    return build_model(cfg)


class Killed(Exception):
    pass


def test_resume_after_a_kill_reproduces_the_uninterrupted_losses_exactly(tmp_path):
    images, labels = data()
    straight = fresh_model()
    full = train_simclr(straight, images, TINY, labels, images, labels, checkpoint=tmp_path / "a.pt", progress=False)
    assert len(full.losses) == 3 * 3 and len(full.knn) == 3

    def kill_after_first_epoch(history):
        if len(history.epoch_losses) == 1:
            raise Killed

    with pytest.raises(Killed):
        train_simclr(fresh_model(), images, TINY, labels, images, labels, checkpoint=tmp_path / "b.pt",
                     callback=kill_after_first_epoch, progress=False)
    torch.manual_seed(123)                          # a new process: different global RNG, different init
    resumed_model = build_model(TINY)
    resumed = train_simclr(resumed_model, images, TINY, labels, images, labels, checkpoint=tmp_path / "b.pt",
                           progress=False)
    assert resumed.losses == full.losses            # bit for bit
    assert resumed.epoch_losses == full.epoch_losses
    for (k, a), b in zip(straight.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), k


def test_time_budget_stops_cleanly_and_resumes_mid_epoch_exactly(tmp_path):
    images, _ = data()
    full = train_simclr(fresh_model(), images, TINY, progress=False)
    budget = replace(TINY, time_budget_min=1e-9)    # every call stops after its first step
    calls, history = 0, None
    while history is None or history.stopped_by_budget:
        history = train_simclr(fresh_model() if calls == 0 else build_model(budget), images, budget,
                               checkpoint=tmp_path / "c.pt", progress=False)
        calls += 1
        state = load_checkpoint(tmp_path / "c.pt", kind="simclr")   # a readable checkpoint after every stop
        assert len(history.losses) == calls and all(math.isfinite(v) for v in history.losses)
        assert calls <= 9
    assert calls == 9 and state["epoch"] == 3
    assert history.losses == full.losses
    assert len(history.segments) == 9


def test_resuming_with_another_config_is_refused(tmp_path):
    images, _ = data()
    train_simclr(fresh_model(), images, replace(TINY, epochs=1), checkpoint=tmp_path / "d.pt", progress=False)
    with pytest.raises(CheckpointError, match="another config"):
        train_simclr(fresh_model(), images, replace(TINY, epochs=1, temperature=0.1), checkpoint=tmp_path / "d.pt",
                     progress=False)
    again = train_simclr(fresh_model(), images, replace(TINY, epochs=1, temperature=0.1),
                         checkpoint=tmp_path / "d.pt", resume=False, progress=False)
    assert len(again.losses) == 3


def test_loss_falls_on_a_tiny_run():
    images, _ = data(64)
    cfg = replace(TINY, epochs=6, batch_size=16, optimizer="adamw", lr=3e-3)
    history = train_simclr(fresh_model(cfg), images, cfg, progress=False)
    assert history.epoch_losses[-1] < history.epoch_losses[0]


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="uint8"):
        train_simclr(fresh_model(), torch.rand(24, 3, 12, 12), TINY, progress=False)
    with pytest.raises(ValueError, match="lower batch_size"):
        train_simclr(fresh_model(), data(4)[0], TINY, progress=False)


def test_learning_rate_warmup_then_cosine():
    lrs = [learning_rate(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] < 1e-3
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_lars_scales_weight_steps_to_their_norm():
    w = torch.nn.Parameter(torch.full((4, 4), 2.0))
    b = torch.nn.Parameter(torch.zeros(4))
    opt = LARS([w, b], lr=1.0, momentum=0.0, eta=0.01)
    w.grad, b.grad = torch.full((4, 4), 1000.0), torch.full((4,), 0.5)
    opt.step()
    # the weight moves by eta * ||w|| whatever its gradient's scale; the bias takes a plain SGD step
    assert torch.linalg.vector_norm(w.detach() - 2.0).item() == pytest.approx(0.01 * 8.0, rel=1e-5)
    torch.testing.assert_close(b.detach(), torch.full((4,), -0.5))


def test_every_tier_has_a_preset():
    for tier in ("smoke", "laptop", "full"):
        cfg = pick(PRESETS, tier)
        assert cfg.views.size in (16, 24, 32) and cfg.epochs > 0
    assert pick(PRESETS, "full").arch == "resnet18"


def test_anneal_to_budget_ends_the_schedule_on_time(tmp_path, capsys):
    images, _ = data()
    cfg = replace(TINY, epochs=10_000, time_budget_min=0.01, anneal_to_budget=True, optimizer="adamw", lr=1e-3)
    seen = []
    history = train_simclr(fresh_model(cfg), images, cfg, progress=False, checkpoint=tmp_path / "run.pt",
                           callback=lambda h: seen.append(len(h.losses)))
    assert history.annealed_early and not history.stopped_by_budget
    assert len(history.losses) < 10_000 * 3 and history.seconds < 0.6 + 10   # ~0.6 s budget, generous slack
    # resumed with a larger budget, the finished run is loaded as it is, and the learner is told so
    capsys.readouterr()
    again = train_simclr(fresh_model(cfg), images, replace(cfg, time_budget_min=1.0), progress=False,
                         checkpoint=tmp_path / "run.pt")
    assert again.losses == history.losses and "holds a finished run" in capsys.readouterr().out
