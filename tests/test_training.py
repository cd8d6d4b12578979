"""The one training run: the budget becomes a step plan (calibration undone), the schedule follows the
step alone, checkpoints resume exactly, other configs are refused, a diverging loss stops the run."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch
from torch import nn

from course_lib.checkpoint import CheckpointError
from course_lib import training
from course_lib.training import TrainingRun, config_identity, describe_difference, plan_steps


@dataclass(frozen=True)
class ToyConfig:
    steps: int = 12
    lr: float = 0.1
    budget_s: float | None = None
    report_every: int = 4  # changes no trajectory: ignored by the identity
    seed: int = 0


def _run(cfg: ToyConfig, checkpoint=None, stop_after=None, loss_scale=1.0, width=1, **kwargs):
    """Noisy linear regression with SGD: every step draws from the generator, like a real trainer."""
    torch.manual_seed(0)
    model = nn.Linear(3, width)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)

    def step(s):
        x = torch.randn(16, 3, generator=gen)
        loss = loss_scale * ((model(x).mean(1) - x.sum(1)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach(), "lr": torch.tensor(optimizer.param_groups[0]["lr"])}

    run = TrainingRun(step, model=model, optimizer=optimizer, generators=[gen], steps=cfg.steps, budget_s=cfg.budget_s,
                      lr=lambda s, total: cfg.lr * (1 - s / total), identity=config_identity(cfg, ("report_every",)), kind="toy",
                      checkpoint=checkpoint, stop_after=stop_after, progress=False, **kwargs)
    return model, run.train()


def test_plan_steps_fits_the_budget_at_the_measured_speed():
    assert plan_steps(1000, budget_s=10.0, seconds_per_step=0.1, spent_s=1.0) == 90
    assert plan_steps(50, budget_s=10.0, seconds_per_step=0.1, spent_s=1.0) == 50  # the step cap comes first
    assert plan_steps(1000, budget_s=1.0, seconds_per_step=5.0, spent_s=2.0) == 1  # always at least one step


def test_the_schedule_follows_the_step_and_the_plan():
    _, h = _run(ToyConfig())
    assert h.total_steps == 12 and h.done and h.per_step["lr"] == pytest.approx([0.1 * (1 - s / 12) for s in range(12)])


def test_a_budgeted_run_equals_the_run_planned_in_its_steps(tmp_path):
    """Calibration steps are undone: weights, optimizer and random state are as if they never ran."""
    model, budgeted = _run(ToyConfig(steps=10_000, budget_s=0.3))
    assert 1 <= budgeted.total_steps < 10_000
    same, planned = _run(ToyConfig(steps=budgeted.total_steps))
    assert budgeted.per_step == planned.per_step
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), same.parameters()))


def test_an_interrupted_run_resumes_exactly_and_a_finished_one_is_only_loaded(tmp_path, capsys):
    model, straight = _run(ToyConfig())
    _, first = _run(ToyConfig(), checkpoint=tmp_path / "run.pt", stop_after=5)
    assert first.step == 5 and not first.done
    resumed_model, resumed = _run(ToyConfig(seed=0), checkpoint=tmp_path / "run.pt")
    assert resumed.per_step == straight.per_step and len(resumed.segments) == 2
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), resumed_model.parameters()))
    capsys.readouterr()
    _, again = _run(ToyConfig(report_every=1), checkpoint=tmp_path / "run.pt")  # evaluation settings may change
    assert again.per_step == straight.per_step and "holds a finished toy run" in capsys.readouterr().out


def test_another_config_is_refused_with_what_differs(tmp_path):
    _run(ToyConfig(steps=3), checkpoint=tmp_path / "run.pt")
    with pytest.raises(CheckpointError, match=r"lr: 0.1 in the checkpoint, 0.2 now.*another checkpoint path"):
        _run(ToyConfig(steps=3, lr=0.2), checkpoint=tmp_path / "run.pt")
    assert describe_difference(config_identity(ToyConfig()), config_identity(replace(ToyConfig(), budget_s=60.0))) \
        == "budget_s: None in the checkpoint, 60.0 now"


def test_a_diverging_loss_stops_the_run_before_it_is_saved(tmp_path):
    with pytest.raises(FloatingPointError, match="loss became (inf|nan) at step 0.*Lower the learning rate"):
        _run(ToyConfig(), checkpoint=tmp_path / "run.pt", loss_scale=float("inf"))
    assert not (tmp_path / "run.pt").exists()


def test_a_budget_is_planned_once_and_the_resumed_run_keeps_the_plan(tmp_path, monkeypatch):
    cfg = ToyConfig(steps=10_000, budget_s=0.3)
    model, first = _run(cfg, checkpoint=tmp_path / "run.pt", stop_after=3)
    assert 3 < first.total_steps < 10_000 and first.step == 3
    monkeypatch.setattr(TrainingRun, "calibrate", lambda self: pytest.fail("a resumed run planned its steps again"))
    resumed_model, resumed = _run(cfg, checkpoint=tmp_path / "run.pt")
    assert resumed.total_steps == first.total_steps == resumed.step
    monkeypatch.undo()
    same, planned = _run(ToyConfig(steps=first.total_steps))
    assert resumed.per_step == planned.per_step
    assert all(torch.equal(a, b) for a, b in zip(resumed_model.parameters(), same.parameters()))


def test_a_checkpoint_of_another_network_is_refused_clearly(tmp_path):
    _run(ToyConfig(steps=2), checkpoint=tmp_path / "run.pt")
    with pytest.raises(CheckpointError, match="does not fit this model.*another checkpoint path"):
        _run(ToyConfig(steps=2), checkpoint=tmp_path / "run.pt", width=4)  # same config, wider network


@pytest.mark.parametrize("every, saves", [(0.0, 12), (3600.0, 1)])
def test_checkpoints_follow_the_cadence(tmp_path, monkeypatch, every, saves):
    calls = []
    monkeypatch.setattr(training, "save_checkpoint", lambda *a, **k: calls.append(k["history"]["per_step"]["loss"]))
    _run(ToyConfig(), checkpoint=tmp_path / "run.pt", checkpoint_every_s=every)
    assert len(calls) == saves and len(calls[-1]) == 12  # every step, or only the end of the run
    with pytest.raises(ValueError, match="budget_s must be"):
        _run(ToyConfig(budget_s=0.0))
