"""Exercises of notebook 05 about the meta-update itself: `climbs`, a test that tells a meta-update that climbs
MAML's objective from one that descends it (graded on a bank of wrong and right updates against the measured
change of the objective), and `reptile_update`, one Reptile step against the library's `reptile_direction`."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.loss_math import close
from course_lib.data.episodes import Episodes
from course_lib.meta.core import adapt_reference, meta_loss, parameters, reptile_direction
from course_lib.meta.models import SinusoidMLP
from course_lib.meta.sinusoid import sample_sinusoids


# ---------------------------------------------------------------- climbs
# The learner writes climbs(update_fn, model, tasks, inner_lr, meta_lr) -> bool: does one step of update_fn raise
# MAML's objective, the mean query MSE after one inner SGD step, on these tasks? The check runs it on a bank of
# updates, wrong and right, and compares each verdict with the change of that objective that it measures here.


def maml_objective(model: nn.Module, tasks: Episodes, inner_lr: float, params: dict | None = None) -> float:
    """Mean over tasks of the query MSE after one inner SGD step of size inner_lr from `params` (default: the
    model's own), by the library's reference loop. tasks: Episodes of float (T, n, 1) tensors."""
    loss, _ = meta_loss(model, tasks, inner_lr=inner_lr, inner_steps=1, loss="mse", impl="loop", params=params)
    return loss.item()


def _step(model: nn.Module, grads: list, size: float) -> dict:
    """theta - size * grad, detached: a new parameter dict; the model is left unchanged."""
    return {name: p.detach() - size * g for (name, p), g in zip(model.named_parameters(), grads)}


def _meta_gradient(model: nn.Module, tasks: Episodes, inner_lr: float, first_order: bool = False) -> list:
    loss, _ = meta_loss(model, tasks, inner_lr=inner_lr, inner_steps=1, first_order=first_order, loss="mse",
                        impl="loop")
    return list(torch.autograd.grad(loss, list(model.parameters())))


def _gradient_after_wrong_inner_step(model: nn.Module, tasks: Episodes, inner_lr: float) -> list:
    """The meta-gradient when the inner step climbs the support loss: theta' = theta + inner_lr * grad L_s."""
    params = parameters(model)
    losses = [F.mse_loss(functional_call(model, adapt_reference(model, params, xs, ys, inner_lr=-inner_lr,
                                                                inner_steps=1, loss="mse"), (xq,)), yq)
              for xs, ys, xq, yq in zip(*tasks)]
    return list(torch.autograd.grad(torch.stack(losses).mean(), list(params.values())))


# Each update is update(model, tasks, inner_lr, meta_lr) -> new parameter dict, and says whether it is a correct
# meta-update. On the "pulling apart" tasks below every wrong one climbs and every right one descends
# (tests/test_exercises_05.py checks it); elsewhere the check expects whatever the measurement says.
UPDATES: dict[str, tuple[Callable, bool]] = {
    "gradient ascent, theta + meta_lr * grad": (
        lambda m, t, a, e: _step(m, _meta_gradient(m, t, a), -e), False),
    "no learning rate, theta - grad": (
        lambda m, t, a, e: _step(m, _meta_gradient(m, t, a), 1.0), False),
    "inner step with the wrong sign, theta' = theta + inner_lr * grad L_support": (
        lambda m, t, a, e: _step(m, _gradient_after_wrong_inner_step(m, t, a), e), False),
    "MAML, theta - meta_lr * grad": (
        lambda m, t, a, e: _step(m, _meta_gradient(m, t, a), e), True),
    "first-order MAML, theta - meta_lr * (query gradient at theta')": (
        lambda m, t, a, e: _step(m, _meta_gradient(m, t, a, first_order=True), e), True),
}


def _model(init) -> nn.Module:
    """A fresh model: the notebook's SinusoidMLP from seed `init` (an int), or a 1 -> 1 linear map with weight
    `init` (a (1,) tensor)."""
    if isinstance(init, torch.Tensor):
        model = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            model.weight.copy_(init.reshape(1, 1))
        return model
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(init)   # the CPU's only: torch.manual_seed would reseed every GPU too
        return SinusoidMLP()


def _climbs_reference(init, xs, ys, xq, yq, inner_lr, meta_lr) -> dict[str, tuple[float, float]]:
    """{update: (objective before, objective after one step of it)}."""
    tasks, found = Episodes(xs, ys, xq, yq), {}
    for name, (update, _) in UPDATES.items():
        model = _model(init)
        found[name] = (maml_objective(model, tasks, inner_lr),
                       maml_objective(model, tasks, inner_lr, update(model, tasks, inner_lr, meta_lr)))
    return found


def _as_verdicts(climbs):
    def run(init, xs, ys, xq, yq, inner_lr, meta_lr):
        # A fresh model per update: a verdict that changes the model in place cannot spoil the next one.
        return {name: climbs(update, _model(init), Episodes(xs, ys, xq, yq), inner_lr, meta_lr)
                for name, (update, _) in UPDATES.items()}

    run.climbs = climbs  # for the diagnosis, which calls it with updates of its own
    return run


def _undecided(before: float, after: float) -> bool:
    """A change too small for float32 to be sure of its sign: either verdict is accepted."""
    return abs(after - before) <= 1e-5 * (1 + abs(before))


def _compare_verdicts(got: dict, want: dict) -> str | None:
    wrong = []
    for name, (before, after) in want.items():
        verdict = got[name]
        if isinstance(verdict, torch.Tensor) and verdict.numel() == 1 and verdict.dtype == torch.bool:
            verdict = bool(verdict)
        if not isinstance(verdict, bool):
            return f"climbs must return True or False, got {verdict!r} for the update '{name}'."
        if verdict != (after > before) and not _undecided(before, after):
            wrong.append(f"'{name}': you said {verdict}, but one step takes the objective from {before:.5g} "
                         f"to {after:.5g}")
    if wrong:
        return (f"{len(wrong)} of {len(want)} verdicts are wrong ({'; '.join(wrong)}). The objective is MAML's: "
                "the mean query MSE after one inner SGD step of size inner_lr, on the tasks given.")
    return None


def _sinusoid_case(n_tasks: int):
    def make(gen):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        tasks, _, _ = sample_sinusoids(n_tasks, 10, 10, gen)
        return (seed, *tasks, 0.01, 0.01)

    return make


def pulling_apart(gen: torch.Generator, n_tasks: int = 2, n: int = 8) -> tuple:
    """(w (1,), x_s, y_s, x_q, y_q (T, n, 1) float32, inner_lr, meta_lr): tasks of a 1 -> 1 linear model whose
    support target lies far from w and whose query target lies near it, on the same side.

    With mean(x_s^2) = 1, inner_lr = 0.25 makes the inner step cover half the way to the support target, past the
    query target; so the objective is the query loss of a point beyond it, and moving w TOWARDS the query target
    raises it. A wrong inner sign lands on the other side and pulls w the wrong way; the query loss before
    adaptation can fall when the objective rises. mean(x_q^2) = 6.25 makes a step of the whole gradient overshoot.
    """
    w = 0.5 * torch.randn(1, generator=gen)
    side = 1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0
    x_s, x_q = torch.randn(n_tasks, n, 1, generator=gen), torch.randn(n_tasks, n, 1, generator=gen)
    x_s = x_s / x_s.pow(2).mean(1, keepdim=True).sqrt()
    x_q = 2.5 * x_q / x_q.pow(2).mean(1, keepdim=True).sqrt()
    support_target = w + side * (2 + 2 * torch.rand(n_tasks, 1, 1, generator=gen))
    query_target = w + side * (0.1 + 0.4 * torch.rand(n_tasks, 1, 1, generator=gen))
    return w, x_s, support_target * x_s, x_q, query_target * x_q, 0.25, 0.05


def _diagnose_climbs(fn, gen) -> str | None:
    """Name the measurement behind a learner's verdicts on the pulling-apart tasks, when it is a classic one."""
    w, xs, ys, xq, yq, inner_lr, meta_lr = pulling_apart(gen)
    grad_enabled = []

    def spy(model, tasks, inner_lr, meta_lr):  # the right update, noting whether autograd is on when it is called
        grad_enabled.append(torch.is_grad_enabled())
        return {name: p.detach() for name, p in model.named_parameters()}

    fn.climbs(spy, _model(w), Episodes(xs, ys, xq, yq), inner_lr, meta_lr)
    if not all(grad_enabled):
        return ("Your climbs calls update_fn under torch.no_grad(): an update takes the gradient of the objective, so "
                "it needs autograd. Measure without gradients if you like, but call update_fn outside no_grad.")
    got, tasks = fn(w, xs, ys, xq, yq, inner_lr, meta_lr), Episodes(xs, ys, xq, yq)
    if got == {name: right for name, (_, right) in UPDATES.items()}:  # the truth here is: the wrong ones climb
        return "Your verdicts are reversed on every update: an update climbs when the loss AFTER it is higher."
    unadapted = {}
    for name, (update, _) in UPDATES.items():
        model = _model(w)
        loss = lambda params: F.mse_loss(functional_call(model, params, (xq.reshape(-1, 1),)), yq.reshape(-1, 1))
        unadapted[name] = bool(loss(update(model, tasks, inner_lr, meta_lr)) > loss(parameters(model)))
    if got == unadapted:
        return ("Your verdicts match the query loss at theta itself, before adaptation. MAML does not minimise that: "
                "it minimises the query loss after the inner step, so measure that one, before and after the update.")
    return None


register(Exercise(
    name="climbs",
    reference=_climbs_reference,
    cases=[Case("5 sinusoid tasks, the notebook's network", _sinusoid_case(5)),
           Case("10 sinusoid tasks, another network", _sinusoid_case(10)),
           Case("linear tasks pulling apart", pulling_apart)],
    hints=["Measure, do not reason: compute the objective before the update, take ONE step with update_fn, compute "
           "it again, and compare.",
           "The objective is what MAML minimises: the query loss after the inner step, averaged over tasks. "
           "meta_loss(model, tasks, inner_lr=inner_lr, inner_steps=1, loss='mse', params=...) computes it for any "
           "parameter dict (the model's own when params is omitted).",
           "before = meta_loss(..., params=parameters(model))[0]; after = meta_loss(..., "
           "params=update_fn(model, tasks, inner_lr, meta_lr))[0]; return bool(after > before)."],
    compare=_compare_verdicts,
    diagnose=_diagnose_climbs,
))


def check_climbs(climbs) -> None:
    """Check `climbs(update_fn, model, tasks, inner_lr, meta_lr) -> bool` on a bank of wrong and right updates.

    update_fn(model, tasks, inner_lr, meta_lr) -> new parameter dict; tasks: Episodes of float (T, n, 1) tensors.
    """
    return check("climbs", _as_verdicts(climbs) if callable(climbs) else climbs)


# ---------------------------------------------------------------- reptile_update
# The learner writes reptile_update(model, tasks, inner_lr, inner_steps, meta_lr) -> new parameter dict: one
# Reptile step, theta + meta_lr * (mean_t theta'_t - theta). The reference is the library's reptile_direction.


def _as_parameter_tuple(reptile_update):
    def run(seed, xs, ys, xq, yq, inner_lr, inner_steps, meta_lr):
        model = _model(seed)
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        new = reptile_update(model, Episodes(xs, ys, xq, yq), inner_lr, inner_steps, meta_lr)
        if not isinstance(new, dict) or set(new) != set(before):
            raise TypeError(f"reptile_update must return a dict with the model's parameter names {sorted(before)}")
        if any(not torch.equal(p, before[name]) for name, p in model.named_parameters()):
            raise ValueError("reptile_update changed the model's parameters in place; leave the model as it is and "
                             "return a new dict")
        return tuple(new[name] for name in before)

    return run


def _reptile_reference(seed, xs, ys, xq, yq, inner_lr, inner_steps, meta_lr) -> tuple:
    """theta - meta_lr * the library's Reptile direction (theta - mean adapted theta), for each parameter."""
    model = _model(seed)
    direction = reptile_direction(model, Episodes(xs, ys, xq, yq), inner_lr=inner_lr, inner_steps=inner_steps,
                                  loss="mse", impl="loop")
    return tuple(p.detach() - meta_lr * direction[name] for name, p in model.named_parameters())


def _reptile_case(n_tasks: int, inner_steps: int, meta_lr: float, n_query: int = 10):
    def make(gen):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        return (seed, *sample_sinusoids(n_tasks, 10, n_query, gen)[0], 0.01, inner_steps, meta_lr)

    return make


def _diagnose_reptile(fn, gen) -> str | None:
    seed, xs, ys, xq, yq, inner_lr, inner_steps, meta_lr = _reptile_case(4, 2, 0.1)(gen)
    theta = [p.detach() for p in _model(seed).parameters()]
    got = fn(seed, xs, ys, xq, yq, inner_lr, inner_steps, meta_lr)
    move = lambda new: torch.cat([(n - t).flatten() for n, t in zip(new, theta)])
    want = move(_reptile_reference(seed, xs, ys, xq, yq, inner_lr, inner_steps, meta_lr))
    got = move(got)
    if close(got, -want):
        return ("Your step moves theta AWAY from the adapted parameters: the sign is flipped. Reptile moves towards "
                "them, theta + meta_lr * (mean theta' - theta).")
    if close(got, len(xs) * want):
        return f"Your step is {len(xs)} times too long, one per task: average the adapted parameters, do not sum."
    # Query points repeated as the support: the MSE of support + query is then the MSE of the support alone.
    support_only = move(_reptile_reference(seed, xs, ys, xs, ys, inner_lr, inner_steps, meta_lr))
    if close(got, support_only):
        return ("Your tasks adapt on their support points only; Reptile adapts on all of a task's points (it has no "
                "query set), so concatenate support and query along dim 1.")
    return None


register(Exercise(
    name="reptile_update",
    reference=_reptile_reference,
    cases=[Case("4 tasks, 1 inner step", _reptile_case(4, 1, 0.1)),
           Case("4 tasks, 3 inner steps", _reptile_case(4, 3, 0.1)),
           Case("1 task, meta_lr = 1: theta becomes the adapted parameters", _reptile_case(1, 2, 1.0)),
           Case("8 tasks, 5 query points each", _reptile_case(8, 2, 0.3, n_query=5))],
    hints=["Per task: start from the model's parameters (detached: Reptile never backpropagates through adaptation), "
           "take inner_steps SGD steps on the MSE of all the task's points (support and query together). Then move "
           "theta a fraction meta_lr of the way to the average of the adapted parameters.",
           "x = torch.cat([tasks.x_support, tasks.x_query], dim=1), the same for y; your inner_loop from Exercise 1, "
           "or the library's sgd_steps(theta, loss_fn, inner_lr=..., inner_steps=..., first_order=True), adapts one "
           "task with loss_fn = lambda p: F.mse_loss(functional_call(model, p, (x[t],)), y[t]).",
           "new[name] = theta[name] + meta_lr * (torch.stack([a[name] for a in adapted]).mean(0) - theta[name]), "
           "detached."],
    diagnose=_diagnose_reptile,
    library=(reptile_direction,),
))


def check_reptile_update(reptile_update) -> None:
    """Check `reptile_update(model, tasks, inner_lr, inner_steps, meta_lr) -> {name: tensor}` against the library.

    tasks: Episodes of float32 (T, K, 1) support and (T, Q, 1) query tensors; each returned tensor has the shape
    and dtype of the model's parameter of that name.
    """
    learner_fn = _as_parameter_tuple(reptile_update) if callable(reptile_update) else reptile_update
    return check("reptile_update", learner_fn)


__all__ = ["check_climbs", "check_reptile_update"]
