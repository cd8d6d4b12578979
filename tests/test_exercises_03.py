"""Notebook 03's exercises: the training step's right answers pass (views encoded together or apart), each
classic bug fails with its own message, bad inputs are reported; the self-check's computed answers are right."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from course_lib import checks
from course_lib.checks import run, solutions
from course_lib.checks import simclr as simclr_checks
from course_lib.checks import simclr_step as step_checks
from course_lib.checks.framework import REGISTRY
from course_lib.contrastive.losses import nt_xent
from course_lib.optim import LARS
from notebook_code import fails as _fails, worked as _worked


def _step(pair=lambda z1, z2: torch.cat([z1, z2]), zero_grad=True, project=True, result=lambda loss: loss.item(),
          check_sizes=True, order="zero_backward_step"):
    """A learner's simclr_step, right by default; each keyword plants one bug."""
    def step(encoder, head, optimizer, x1, x2, temperature):
        if check_sizes and len(x1) != len(x2):
            raise ValueError("x1 and x2 must have the same number of images")
        h1, h2 = encoder(x1), encoder(x2)
        z1, z2 = (head(h1), head(h2)) if project else (h1, h2)
        loss = nt_xent(pair(z1, z2), temperature)
        if order == "backward_zero_step":
            loss.backward()
            optimizer.zero_grad()
        else:
            if zero_grad:
                optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        return result(loss)
    return step


def _together(encoder, head, optimizer, x1, x2, temperature):
    """Right too: both views in one batch through the encoder (the library's make_step does this)."""
    if len(x1) != len(x2):
        raise ValueError("x1 and x2 must have the same number of images")
    loss = nt_xent(head(encoder(torch.cat([x1, x2]))), temperature)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


# ---- simclr_step -------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [_step(), _together], ids=["views apart", "views together"])
def test_right_steps_pass_on_many_seeds(fn):
    wrapped = functools.partial(step_checks.run_steps, fn)  # what check_simclr_step hands the framework
    for seed in range(0, 400, 40):
        result = run(REGISTRY["simclr_step"], wrapped, seed=seed)
        assert result.passed, result.message


def test_the_worked_solution_passes(capsys):
    checks.check_simclr_step(_worked("simclr_step"))
    assert capsys.readouterr().out.startswith("✓ simclr_step: 5 cases passed")


BUGS = [
    (_step(zero_grad=False), ["two steps in a row", "the parameters after the step are not",
                              "without optimizer.zero_grad()"]),
    (_step(pair=lambda z1, z2: torch.stack([z1, z2], dim=1).flatten(0, 1)),
     ["the returned loss is", "pairs rows 2i and 2i + 1", "torch.cat([z1, z2])"]),
    (_step(pair=lambda z1, z2: torch.cat([z1, z1])), ["compares the first view with itself"]),
    (_step(project=False), ["computed on h = encoder(x)"]),
    (_step(result=lambda loss: loss), ["returned a torch.Tensor", "loss.item()"]),
    (_step(result=lambda loss: loss.detach()), ["returned a torch.Tensor"]),
    (_step(result=lambda loss: None), ["returned None, expected the loss as a Python float"]),
    (_step(order="backward_zero_step"), ["The parameters did not move"]),
    (_step(check_sizes=False), ["different numbers of images", "should raise ValueError"]),
]


@pytest.mark.parametrize("buggy,words", BUGS, ids=[f"bug-{i}" for i in range(len(BUGS))])
def test_each_classic_bug_gets_its_specific_message(buggy, words):
    _fails(checks.check_simclr_step, buggy, *words)


def test_a_step_that_raises_names_the_learners_line():
    def broken(encoder, head, optimizer, x1, x2, temperature):
        z = head(encoder(x1))
        return nt_xent(torch.cat([z, z[:, :2]]), temperature).item()  # the widths do not match

    _fails(checks.check_simclr_step, broken, "your function raised RuntimeError", "line")


def test_not_a_function_and_a_stub_are_reported():
    _fails(checks.check_simclr_step, "my_simclr_step", "expected a function, got str")

    def stub(*args):
        raise NotImplementedError("Exercise 'simclr_step': replace this line with your code.")

    _fails(checks.check_simclr_step, stub, "Not implemented yet")


def test_a_learner_keeping_a_global_optimizer_state_is_caught():
    """Every case builds fresh models and optimizer: a step that ignores the optimizer it is given and steps
    one of its own, created on the first call, moves parameters the check never sees."""
    own = {}

    def step(encoder, head, optimizer, x1, x2, temperature):
        if len(x1) != len(x2):
            raise ValueError("sizes")
        opt = own.setdefault("opt", torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.5))
        loss = nt_xent(torch.cat([head(encoder(x1)), head(encoder(x2))]), temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    _fails(checks.check_simclr_step, step, "parameters")


def test_reference_and_cases_are_deterministic_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    args = step_checks._step_case(2, 4, 0.5, "lars")(torch.Generator().manual_seed(0))
    first = step_checks.run_steps(step_checks.reference_step, *args)
    second = step_checks.run_steps(step_checks.reference_step, *args)
    assert first[0] == second[0] and torch.equal(first[1], second[1])
    assert torch.equal(torch.get_rng_state(), state)
    # A real step: the loss is informative (well below its chance value log(2N - 1)) and the parameters move.
    assert first[0] < math.log(2 * 4 - 1)
    start = step_checks._parameters(*step_checks.tiny_models(args[0]))
    assert not torch.allclose(first[1], start)


# ---- self_check_03 -----------------------------------------------------------------------------


def test_self_check_numbers_are_computed_from_the_library_and_agree_with_the_maths():
    assert simclr_checks.ideal_loss() == pytest.approx(math.log1p(510 * math.exp(-5)), rel=1e-5)
    assert simclr_checks.lars_step_length() == pytest.approx(0.5 * 0.02 * 3.0, rel=1e-5)
    # The step length does not depend on the gradient's norm: that is the point of the trust ratio.
    assert simclr_checks.lars_step_length(grad_norm=1e-3) == pytest.approx(0.03, rel=1e-5)


def test_self_check_worked_answers_pass_and_wrong_ones_say_why(capsys):
    code = solutions.load()["self_check_03"]
    namespace = {}
    exec(code, namespace)
    checks.check_self_check_03(namespace["answers"])
    assert capsys.readouterr().out.startswith("✓ self_check_03")
    _fails(checks.check_self_check_03, {1: 0.0, 2: "a", 3: 0.03, 4: "b"},
           "2 of 4 not right yet", "question 1", "question 2: not 'a'")
    _fails(checks.check_self_check_03, {1: 1.49, 2: "b", 3: 0.03}, "no answer to question(s) [4]")


def test_lars_first_step_moves_every_weight_by_the_same_fraction():
    """What the notebook's LARS cell shows, on a small model: ||dw|| / ||w|| = lr * eta for every weight tensor."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    before = [p.detach().clone() for p in model.parameters()]
    (model(torch.randn(9, 5, generator=gen)) ** 2).sum().mul(100).backward()
    LARS(model.parameters(), lr=0.1).step()
    for p, b in zip(model.parameters(), before):
        if p.ndim > 1:
            assert ((p.detach() - b).norm() / b.norm()).item() == pytest.approx(0.1 * 0.02, rel=1e-5)
