"""How a training run's progress bar ends: complete when the run ends as planned, on its time budget or on
purpose (`stop_after`), with the reason printed; interrupted (red in Jupyter) after an error or Ctrl-C, even one
that comes after the bar's last update. Runs with tqdm's real terminal bar and its real Jupyter widget."""

from __future__ import annotations

import io

import pytest
import torch
import tqdm.auto
import tqdm.notebook
import tqdm.std
from torch import nn

from course_lib.training import TrainingRun


def _run(steps=12, budget_s=None, stop_after=None, fail_at=None, evaluate=None, checkpoint=None, progress=True):
    """Noisy linear regression with SGD; `fail_at`: the step whose step function raises KeyboardInterrupt."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)

    def step(s):
        if s == fail_at:
            raise KeyboardInterrupt
        x = torch.randn(16, 3, generator=gen)
        loss = ((model(x)[:, 0] - x.sum(1)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    run = TrainingRun(step, model=model, optimizer=optimizer, generators=[gen], steps=steps, budget_s=budget_s,
                      lr=lambda s, total: 0.05, kind="toy", checkpoint=checkpoint, stop_after=stop_after,
                      evaluate=evaluate, progress=progress, desc="toy")
    return run.train()


@pytest.fixture(params=["terminal", "jupyter"])
def bars(request, monkeypatch):
    """The bars a run opens, of tqdm's terminal class (writing to a buffer) or its Jupyter widget class."""
    made = []
    base = tqdm.std.tqdm if request.param == "terminal" else tqdm.notebook.tqdm

    class Recorded(base):
        def __init__(self, *args, **kwargs):
            kwargs.update(file=io.StringIO()) if request.param == "terminal" else kwargs.update(display=False)
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    return made


def style(bar) -> str | None:
    """The widget's colour ("success" green, "danger" red); None for a terminal bar."""
    return bar.container.children[1].bar_style if hasattr(bar, "container") else None


def assert_complete(bar, steps: int):
    assert bar.n == bar.total == steps
    if hasattr(bar, "container"):
        widget = bar.container.children[1]
        assert widget.value == widget.max == steps and style(bar) == "success"


def test_a_run_that_ends_as_planned_says_nothing_more(bars, capsys):
    h = _run()
    assert len(bars) == 1 and h.step == 12
    assert_complete(bars[0], 12)
    assert capsys.readouterr().out == ""


def test_a_run_that_ends_on_its_time_budget_ends_complete_and_says_why(bars, capsys):
    h = _run(steps=100_000, budget_s=0.3)
    assert 1 <= h.step == h.total_steps < 100_000
    assert_complete(bars[0], h.step)
    assert capsys.readouterr().out == (
        f"ended at step {h.step}, the end of its plan: the time budget of 0.3 s fits {h.step} of the 100000 steps "
        "asked for (measured at the start of the run)\n")


def test_a_run_stopped_on_purpose_ends_complete_and_says_why(bars, capsys, tmp_path):
    h = _run(stop_after=5, checkpoint=tmp_path / "run.pt")
    assert h.step == 5 and h.total_steps == 12
    assert_complete(bars[0], 5)
    assert capsys.readouterr().out == ("stopped at step 5 of 12: stop_after=5 steps in this call; train again with "
                                       "the same checkpoint to resume\n")
    resumed = _run(checkpoint=tmp_path / "run.pt")  # the next call counts from 5 to the plan's 12
    assert resumed.step == 12 and bars[1].n == bars[1].total == 12 and style(bars[1]) in (None, "success")


def test_an_interrupted_run_shows_as_interrupted(bars, capsys):
    with pytest.raises(KeyboardInterrupt):
        _run(fail_at=7)
    bar = bars[0]
    assert bar.n < bar.total == 12 and "interrupted at step 7 of 12" in bar.postfix
    assert style(bar) in (None, "danger")
    assert "stopped" not in capsys.readouterr().out


def test_an_error_after_the_last_update_still_shows_as_interrupted(bars):
    def evaluate():
        raise RuntimeError("the final evaluation failed")

    with pytest.raises(RuntimeError, match="final evaluation"):
        _run(evaluate=evaluate)
    bar = bars[0]
    assert bar.n == bar.total == 12  # the bar had moved to its end before the evaluation
    assert "interrupted at step 12 of 12" in bar.postfix and style(bar) in (None, "danger")


def test_a_quiet_run_prints_nothing(bars, capsys):
    _run(stop_after=5, progress=False)
    _run(steps=100_000, budget_s=0.2, progress=False)
    assert capsys.readouterr().out == ""
