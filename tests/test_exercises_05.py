"""Notebook 05's exercises: the script's meta-update (reproduced in the notebook) really climbs; the check's bank
of updates is what it says; right answers pass, each classic bug fails with its own message, bad inputs are
reported; the self-check's computed answers are right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from course_lib.checks import check_climbs, check_reptile_update, check_self_check_05, solutions
from course_lib.checks import maml as maml_checks
from course_lib.checks import meta_updates
from course_lib.data.episodes import Episodes
from course_lib.meta import meta_loss, parameters
from course_lib.meta.models import SinusoidMLP
from course_lib.meta.sinusoid import sample_sinusoids
from notebook_code import fails as _fails

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_meta_learning_maml.ipynb"
SEEDS = range(8)


def _defined(code: str, name: str):
    """Function `name` after running `code` in a namespace with what the notebook has imported by then."""
    namespace = {"torch": torch, "F": F, "functional_call": functional_call, "meta_loss": meta_loss,
                 "parameters": parameters}
    exec(code, namespace)
    return namespace[name]


def _notebook_function(name: str):
    """A function defined in a code cell of the instructor notebook (the cell holds only definitions)."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    found = [c for c in cells if c["cell_type"] == "code" and f"def {name}(" in "".join(c["source"])]
    assert len(found) == 1, f"one cell of {NOTEBOOK.name} should define {name}"
    return _defined("".join(found[0]["source"]), name)


def _worked(exercise: str, name: str | None = None):
    """Function `name` (default: the exercise's own) of the exercise's worked solution, from solutions.json."""
    return _defined(solutions.load()[exercise], name or exercise)


def _sinusoid_problem(seed: int, n_tasks: int = 5) -> tuple:
    """The notebook's network (seed `seed`) and n_tasks real sinusoid tasks, K = Q = 10."""
    torch.manual_seed(seed)
    model = SinusoidMLP()
    tasks, _, _ = sample_sinusoids(n_tasks, 10, 10, torch.Generator().manual_seed(seed))
    return model, tasks


# ---- the script's update, as the notebook reproduces it ----------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_the_reproduced_script_update_raises_the_loss_it_should_lower(seed):
    """One step of theta + eta * grad raises MAML's objective, on one task and on a batch, as the script's does."""
    ascent = _notebook_function("ascent_meta_update")
    for n_tasks in (1, 5):
        model, tasks = _sinusoid_problem(seed, n_tasks)
        before = meta_updates.maml_objective(model, tasks, 0.01)
        after = meta_updates.maml_objective(model, tasks, 0.01, ascent(model, tasks, 0.01, 0.01))
        assert after > before, (n_tasks, before, after)


def test_the_reproduction_is_the_banks_gradient_ascent_and_leaves_the_model_alone():
    model, tasks = _sinusoid_problem(0)
    theta = {k: p.detach().clone() for k, p in model.named_parameters()}
    got = _notebook_function("ascent_meta_update")(model, tasks, 0.01, 0.01)
    want = meta_updates.UPDATES["gradient ascent, theta + meta_lr * grad"][0](model, tasks, 0.01, 0.01)
    for name in theta:
        torch.testing.assert_close(got[name], want[name])
        assert torch.equal(dict(model.named_parameters())[name], theta[name])
        assert not got[name].requires_grad


def test_the_worked_fix_descends():
    descent = _worked("climbs", "descent_meta_update")
    for seed in SEEDS:
        model, tasks = _sinusoid_problem(seed)
        before = meta_updates.maml_objective(model, tasks, 0.01)
        assert meta_updates.maml_objective(model, tasks, 0.01, descent(model, tasks, 0.01, 0.01)) < before


# ---- the bank of updates behind check_climbs -----------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_on_tasks_pulling_apart_every_wrong_update_climbs_and_every_right_one_descends(seed):
    found = meta_updates._climbs_reference(*meta_updates.pulling_apart(torch.Generator().manual_seed(seed)))
    for name, (_, right) in meta_updates.UPDATES.items():
        before, after = found[name]
        assert (after > before) == (not right), (name, before, after)
        assert not meta_updates._undecided(before, after), name


def test_on_sinusoid_batches_ascent_climbs_and_maml_descends():
    for seed in SEEDS:
        found = meta_updates._climbs_reference(*meta_updates._sinusoid_case(5)(torch.Generator().manual_seed(seed)))
        before, after = found["gradient ascent, theta + meta_lr * grad"]
        assert after > before
        for name in ("MAML, theta - meta_lr * grad", "first-order MAML, theta - meta_lr * (query gradient at theta')"):
            before, after = found[name]
            assert after < before, name


# ---- check_climbs ------------------------------------------------------------------------------


def test_climbs_accepts_the_worked_solution_and_a_bool_tensor(capsys):
    climbs = _worked("climbs")
    check_climbs(climbs)
    check_climbs(lambda *args: torch.tensor(climbs(*args)))
    assert capsys.readouterr().out.count("✓ climbs") == 2


def _query_loss_before_adaptation(update_fn, model, tasks, inner_lr, meta_lr):
    def loss(params):
        out = functional_call(model, params, (tasks.x_query.reshape(-1, 1),))
        return F.mse_loss(out, tasks.y_query.reshape(-1, 1)).item()

    return loss(update_fn(model, tasks, inner_lr, meta_lr)) > loss(parameters(model))


def test_climbs_names_a_measurement_before_adaptation():
    _fails(check_climbs, _query_loss_before_adaptation, "verdicts are wrong", "before adaptation")


def test_climbs_names_reversed_verdicts():
    climbs = _worked("climbs")
    _fails(check_climbs, lambda *args: not climbs(*args), "reversed on every update")


@pytest.mark.parametrize("verdict", [True, False])
def test_climbs_rejects_a_constant_verdict(verdict):
    _fails(check_climbs, lambda *args: verdict, "verdicts are wrong", "MAML, theta - meta_lr * grad"
           if verdict else "gradient ascent")


def test_climbs_rejects_a_measurement_of_the_support_loss():
    def support_loss(update_fn, model, tasks, inner_lr, meta_lr):
        loss = lambda p: F.mse_loss(functional_call(model, p, (tasks.x_support.reshape(-1, 1),)),
                                    tasks.y_support.reshape(-1, 1)).item()
        return loss(update_fn(model, tasks, inner_lr, meta_lr)) > loss(parameters(model))

    _fails(check_climbs, support_loss, "linear tasks pulling apart", "verdicts are wrong")


@pytest.mark.parametrize("fn,words", [
    (lambda *args: 1.0, ("must return True or False", "got 1.0")),
    (lambda *args: None, ("must return True or False",)),
    ("not a function", ("expected a function",)),
])
def test_climbs_reports_bad_returns_and_inputs(fn, words):
    _fails(check_climbs, fn, *words)


def test_climbs_stub_is_not_implemented_yet():
    def stub(*args):
        raise NotImplementedError("Exercise 'climbs': replace this line with your code.")

    _fails(check_climbs, stub, "Not implemented yet")


# ---- check_reptile_update ------------------------------------------------------------------------


def test_reptile_update_accepts_the_worked_solution(capsys):
    check_reptile_update(_worked("reptile_update"))
    assert capsys.readouterr().out.startswith("✓ reptile_update")


def _variant(change):
    """The worked reptile_update with its step changed: change(theta, new, tasks) -> the returned dict."""
    reptile = _worked("reptile_update")

    def fn(model, tasks, inner_lr, inner_steps, meta_lr):
        theta = {k: p.detach() for k, p in model.named_parameters()}
        return change(theta, reptile(model, tasks, inner_lr, inner_steps, meta_lr), tasks, model,
                      (inner_lr, inner_steps, meta_lr))

    return fn


def test_reptile_update_names_the_flipped_sign():
    flipped = _variant(lambda theta, new, *_: {k: 2 * theta[k] - new[k] for k in new})
    _fails(check_reptile_update, flipped, "AWAY from the adapted parameters")


def test_reptile_update_names_a_sum_over_tasks():
    summed = _variant(lambda theta, new, tasks, *_: {k: theta[k] + len(tasks.x_support) * (new[k] - theta[k])
                                                     for k in new})
    _fails(check_reptile_update, summed, "times too long", "average")


def test_reptile_update_names_adapting_on_the_support_only():
    reptile = _worked("reptile_update")

    def support_only(model, tasks, inner_lr, inner_steps, meta_lr):
        half = tasks.x_support.shape[1] // 2  # split the support in two, so that support + query = the support
        return reptile(model, Episodes(tasks.x_support[:, :half], tasks.y_support[:, :half],
                                       tasks.x_support[:, half:], tasks.y_support[:, half:]), inner_lr, inner_steps,
                       meta_lr)

    _fails(check_reptile_update, support_only, "support points only")


def test_reptile_update_rejects_changing_the_model_in_place():
    def in_place(theta, new, tasks, model, _):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(new[name])
        return dict(model.named_parameters())

    _fails(check_reptile_update, _variant(in_place), "in place")


@pytest.mark.parametrize("change,words", [
    (lambda theta, new, *_: list(new.values()), ("must return a dict",)),
    (lambda theta, new, *_: {k: v for k, v in list(new.items())[1:]}, ("must return a dict", "head.weight")),
    (lambda theta, new, *_: {k: v.double() for k, v in new.items()}, ("wrong dtype",)),
])
def test_reptile_update_reports_bad_returns(change, words):
    _fails(check_reptile_update, _variant(change), *words)


def test_reptile_update_reports_a_non_function():
    _fails(check_reptile_update, {"head.bias": torch.zeros(1)}, "expected a function")


def test_climbs_names_an_update_called_without_autograd():
    climbs = _worked("climbs")

    def under_no_grad(*args):
        with torch.no_grad():
            return climbs(*args)

    _fails(check_climbs, under_no_grad, "does not require grad", "calls update_fn under torch.no_grad()")


def test_reptile_update_rejects_the_meta_lr_ignored():
    ignored = _variant(lambda theta, new, tasks, model, args: _worked("reptile_update")(model, tasks, args[0],
                                                                                         args[1], 1.0))
    _fails(check_reptile_update, ignored, "wrong values")


# ---- self_check_05 -------------------------------------------------------------------------------


def test_self_check_answers_are_computed_right():
    assert maml_checks._quadratic_after_ascent() == pytest.approx(5.76)  # theta = 1 + 0.1 * (-4) = 0.6
    assert maml_checks._one_dimensional_meta_gradient() == pytest.approx(0.8 * -1.2)  # (1 - 2 alpha) L_q'(0.4)


def test_self_check_passes_the_worked_answers_and_explains_wrong_ones(capsys):
    answers = {1: 5.76, 2: "b", 3: "b", 4: -0.96}
    check_self_check_05(answers)
    assert capsys.readouterr().out.startswith("✓ self_check_05")
    message = _fails(check_self_check_05, {**answers, 1: 4.0, 3: "c"}, "2 of 4 not right yet")
    assert "sign flipped" in message and "L'(theta) = 2 (theta - 3)" in message
    _fails(check_self_check_05, {**answers, 4: -1.2}, "1 - alpha L_s''")  # the first-order value
    _fails(check_self_check_05, {1: 5.76}, "no answer to question(s) [2, 3, 4]")
