"""SimCLR training: exact resume on CPU, the time budget as a step plan, refused configs, schedule and LARS."""

from dataclasses import replace

import pytest
import torch

from course_lib.contrastive.views import ViewConfig
from course_lib.checkpoint import CheckpointError, load_checkpoint
from course_lib.optim import LARS, learning_rate, weight_decay_groups
from course_lib.contrastive.simclr import PRESETS, SimCLRConfig, build_model, epoch_order, train_simclr
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


def _same_run(a, b):
    assert a.per_step == b.per_step  # bit for bit
    assert [{k: v for k, v in e.items() if k != "seconds"} for e in a.evals] == \
        [{k: v for k, v in e.items() if k != "seconds"} for e in b.evals]


def test_resume_after_an_interruption_reproduces_the_uninterrupted_run_exactly(tmp_path):
    images, labels = data()
    straight = fresh_model()
    full = train_simclr(straight, images, TINY, labels, images, labels, progress=False)
    assert len(full.losses) == 3 * 3 and len(full.evals) == 3 and full.done

    def kill_after_first_epoch(history):
        if history.step == 3:
            raise Killed

    with pytest.raises(Killed):
        train_simclr(fresh_model(), images, TINY, labels, images, labels, checkpoint=tmp_path / "b.pt",
                     checkpoint_every_s=0.0, callback=kill_after_first_epoch, progress=False)
    torch.manual_seed(123)                          # a new process: different global RNG, different init
    resumed_model = build_model(TINY)
    resumed = train_simclr(resumed_model, images, TINY, labels, images, labels, checkpoint=tmp_path / "b.pt",
                           progress=False)
    _same_run(resumed, full)
    for (k, a), b in zip(straight.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_time_budget_plans_fewer_steps_and_a_finished_run_says_so(tmp_path, capsys):
    images, _ = data()
    budget = replace(TINY, epochs=10_000, budget_s=0.5, optimizer="adamw", lr=1e-3)
    first = train_simclr(fresh_model(budget), images, budget, checkpoint=tmp_path / "c.pt", progress=False)
    assert 1 <= first.total_steps < 10_000 * 3 and first.done and first.step == first.total_steps
    assert load_checkpoint(tmp_path / "c.pt", kind="simclr")["history"]["total_steps"] == first.total_steps
    capsys.readouterr()
    again = train_simclr(fresh_model(budget), images, budget, checkpoint=tmp_path / "c.pt", progress=False)
    assert again.per_step == first.per_step and "holds a finished simclr run" in capsys.readouterr().out


def test_resuming_with_another_config_is_refused_and_says_what_differs(tmp_path):
    images, _ = data()
    train_simclr(fresh_model(), images, replace(TINY, epochs=1), checkpoint=tmp_path / "d.pt", progress=False)
    with pytest.raises(CheckpointError, match=r"temperature: 0.5 in the checkpoint, 0.1 now"):
        train_simclr(fresh_model(), images, replace(TINY, epochs=1, temperature=0.1), checkpoint=tmp_path / "d.pt",
                     progress=False)
    # evaluation settings do not change the trajectory: the run is the same, and resumes (here: is done)
    again = train_simclr(fresh_model(), images, replace(TINY, epochs=1, knn_every=5), checkpoint=tmp_path / "d.pt",
                         progress=False)
    assert again.done


def test_the_epoch_shuffle_is_a_pure_function_of_seed_and_epoch():
    a, b = epoch_order(50, 0, 3, torch.device("cpu")), epoch_order(50, 0, 3, torch.device("cpu"))
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(50))
    assert not torch.equal(a, epoch_order(50, 0, 4, torch.device("cpu")))


def test_loss_falls_on_a_tiny_run():
    images, _ = data(64)
    cfg = replace(TINY, epochs=6, batch_size=16, optimizer="adamw", lr=3e-3)
    history = train_simclr(fresh_model(cfg), images, cfg, progress=False)
    per_epoch = 64 // 16
    assert sum(history.losses[-per_epoch:]) < sum(history.losses[:per_epoch])


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


def test_weight_decay_groups_decay_weights_and_spare_biases_and_batchnorm():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Linear(2, 3))
    decay, rest = weight_decay_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and rest["weight_decay"] == 0.0
    assert [tuple(p.shape) for p in decay["params"]] == [(2, 1, 3, 3), (3, 2)]
    assert sorted(tuple(p.shape) for p in rest["params"]) == [(2,), (2,), (2,), (3,)]  # conv bias, BN scale+shift, linear bias
