"""Exercises of notebook 05 (MAML): the inner loop, the meta-gradient of one step by hand, a test that tells a
meta-update that climbs the loss from one that descends it, one Reptile step; and the notebook's self-check.

The references are the library's: its functional MAML (`course_lib.meta.core.adapt_reference`, `meta_loss`) run
on small modules, and its Reptile direction (`reptile_direction`), so a learner's code is compared with the code
the course trains with.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.loss_math import close
from course_lib.checks.quiz import Choice, Number, self_check
from course_lib.data.episodes import Episodes
from course_lib.meta.core import adapt_reference, meta_loss, parameters, reptile_direction
from course_lib.meta.models import SinusoidMLP
from course_lib.meta.sinusoid import sample_sinusoids

# ---------------------------------------------------------------- inner_loop
# The learner writes inner_loop(params, loss_fn, inner_lr, inner_steps, first_order) -> adapted dict.
# The framework compares tensors, so both functions are run on a tiny two-layer tanh network whose
# parameters are the positional inputs; gradients w.r.t. them test the second-order term.


class _TanhNet(nn.Module):
    """tanh(x @ w1 + b1) @ w2 as a module, so that adapt_reference (functional_call) can run it. x (n, d) -> (n, 1).

    The placeholders' shapes do not matter: functional_call replaces them with each case's tensors.
    """

    def __init__(self):
        super().__init__()
        self.w1, self.b1, self.w2 = (nn.Parameter(torch.zeros(1)) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w1 + self.b1) @ self.w2


_NET = _TanhNet()


def _tiny_loss(x: torch.Tensor, y: torch.Tensor):
    """The task's support loss as a pure function of a parameter dict, as the learner's inner_loop takes it."""
    def loss_fn(p: dict) -> torch.Tensor:
        return F.mse_loss(functional_call(_NET, p, (x,)), y)

    return loss_fn


def _as_tensor_fn(inner_loop):
    def run(w1, b1, w2, x, y, inner_lr, inner_steps, first_order):
        adapted = inner_loop({"w1": w1, "b1": b1, "w2": w2}, _tiny_loss(x, y), inner_lr, inner_steps, first_order)
        if not isinstance(adapted, dict) or set(adapted) != {"w1", "b1", "w2"}:
            raise TypeError("inner_loop must return a dict with the same keys as params ('w1', 'b1', 'w2').")
        return adapted["w1"], adapted["b1"], adapted["w2"]

    return run


def _inner_loop_reference(w1, b1, w2, x, y, inner_lr, inner_steps, first_order):
    """The adapted (w1, b1, w2) after `inner_steps` SGD steps on the mean squared error of (x, y)."""
    adapted = adapt_reference(_NET, {"w1": w1, "b1": b1, "w2": w2}, x, y, inner_lr=inner_lr, inner_steps=inner_steps,
                              first_order=first_order, loss="mse")
    return adapted["w1"], adapted["b1"], adapted["w2"]


def _inner_case(steps: int, first_order: bool):
    def make(gen):
        d, h, n = 3, 4, 6
        return (0.5 * torch.randn(d, h, generator=gen), 0.1 * torch.randn(h, generator=gen),
                0.5 * torch.randn(h, 1, generator=gen), torch.randn(n, d, generator=gen),
                torch.randn(n, 1, generator=gen), 0.1, steps, first_order)
    return make


register(Exercise(
    name="inner_loop",
    reference=_inner_loop_reference,
    cases=[Case("one step, second order", _inner_case(1, False), grad=True),
           Case("three steps, second order", _inner_case(3, False), grad=True),
           Case("two steps, first order", _inner_case(2, True), grad=True)],
    hints=["Repeat inner_steps times: loss = loss_fn(params); grads = torch.autograd.grad(loss, list(params.values()), ...); "
           "params = {name: p - inner_lr * g ...}.",
           "Second order needs the inner gradient to stay in the graph: create_graph=True. First order: "
           "create_graph=False (the gradient is then a constant).",
           "Build a NEW dict each step (no in-place updates, no .data, no torch.no_grad): the adapted "
           "parameters must remain a differentiable function of the initial ones."],
    rtol=1e-4, atol=1e-6,
))


def check_inner_loop(inner_loop) -> None:
    """Check `inner_loop(params, loss_fn, inner_lr, inner_steps, first_order) -> dict` (values and gradients)."""
    return check("inner_loop", _as_tensor_fn(inner_loop))


# ---------------------------------------------------------------- linear_meta_gradient
# Linear regression f(x) = x @ w, L(w) = mean((X w - y)^2). One inner step w' = w - a grad L_s(w);
# the meta-gradient is d L_q(w') / d w = (I - a H_s) grad L_q(w'), H_s = 2/n_s X_s^T X_s.


class _Linear(nn.Module):
    """x @ w as a module, so that adapt_reference (functional_call) can run it. x (n, D) -> (n,)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))  # a placeholder: functional_call passes each case's w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w


_LINEAR = _Linear()


def linear_meta_gradient_reference(w, x_s, y_s, x_q, y_q, inner_lr) -> torch.Tensor:
    """d L_q(w') / d w for w' one inner SGD step from w (D,), by autograd through the library's adapt_reference.

    x_s (n_s, D), y_s (n_s,), x_q (n_q, D), y_q (n_q,).
    """
    w = w.detach().requires_grad_(True)
    params = adapt_reference(_LINEAR, {"w": w}, x_s, y_s, inner_lr=inner_lr, inner_steps=1, loss="mse")
    return torch.autograd.grad(F.mse_loss(functional_call(_LINEAR, params, (x_q,)), y_q), w)[0]


def linear_task(gen: torch.Generator, dim: int, k_support: int, k_query: int) -> tuple:
    """(w, x_support, y_support, x_query, y_query): a starting w (D,) and a random task y = x @ w_true + noise."""
    w_true = torch.randn(dim, generator=gen)
    x_s, x_q = torch.randn(k_support, dim, generator=gen), torch.randn(k_query, dim, generator=gen)
    y_s = x_s @ w_true + 0.1 * torch.randn(k_support, generator=gen)
    y_q = x_q @ w_true + 0.1 * torch.randn(k_query, generator=gen)
    return torch.randn(dim, generator=gen), x_s, y_s, x_q, y_q


def _linear_case(d: int, n_s: int, n_q: int, lr: float):
    return lambda gen: linear_task(gen, d, n_s, n_q) + (lr,)


register(Exercise(
    name="linear_meta_gradient",
    reference=linear_meta_gradient_reference,
    cases=[Case("d=3, 5 support, 7 query", _linear_case(3, 5, 7, 0.05)),
           Case("d=1", _linear_case(1, 4, 4, 0.1)),
           Case("d=8, big step", _linear_case(8, 10, 12, 0.3))],
    hints=["Write the three pieces: g_s = 2/n_s X_s^T (X_s w - y_s); w' = w - inner_lr g_s; "
           "g_q = 2/n_q X_q^T (X_q w' - y_q).",
           "The chain rule through w' = w - a g_s(w) gives dw'/dw = I - a H_s with the Hessian H_s = 2/n_s X_s^T X_s "
           "(constant for a linear model).",
           "meta-gradient = (I - inner_lr * H_s) @ g_q. Dropping the H_s term gives first-order MAML."],
    rtol=1e-4, atol=1e-5,
))


def check_linear_meta_gradient(linear_meta_gradient) -> None:
    """Check `linear_meta_gradient(w, x_s, y_s, x_q, y_q, inner_lr) -> (d,)` against autograd."""
    return check("linear_meta_gradient", linear_meta_gradient)


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
        torch.manual_seed(init)
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
))


def check_reptile_update(reptile_update) -> None:
    """Check `reptile_update(model, tasks, inner_lr, inner_steps, meta_lr) -> {name: tensor}` against the library.

    tasks: Episodes of float32 (T, K, 1) support and (T, Q, 1) query tensors; each returned tensor has the shape
    and dtype of the model's parameter of that name.
    """
    learner_fn = _as_parameter_tuple(reptile_update) if callable(reptile_update) else reptile_update
    return check("reptile_update", learner_fn)


# ---------------------------------------------------------------- self_check_05


def _quadratic_after_ascent(theta: float = 1.0, target: float = 3.0, lr: float = 0.1) -> float:
    """L(theta) = (theta - target)^2 after one step theta + lr * L'(theta)."""
    theta = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    loss = lambda t: (t - target) ** 2
    (grad,) = torch.autograd.grad(loss(theta), theta)
    return loss(theta.detach() + lr * grad).item()


def _one_dimensional_meta_gradient(theta: float = 0.0, inner_lr: float = 0.1) -> float:
    """d/dtheta of L_q(theta - inner_lr * L_s'(theta)) with L_s = (theta - 2)^2, L_q = (theta - 1)^2, by autograd."""
    theta = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    (grad_s,) = torch.autograd.grad((theta - 2) ** 2, theta, create_graph=True)
    (meta_grad,) = torch.autograd.grad((theta - inner_lr * grad_s - 1) ** 2, theta)
    return meta_grad.item()


check_self_check_05 = self_check("self_check_05", {
    1: Number(_quadratic_after_ascent,
              why="L'(1) = -4, so theta + 0.1 L'(1) = 0.6 and L = 2.4^2 = 5.76: the loss rose from 4. A step along "
                  "+gradient changes any loss by about +eta |g|^2 (here 1.6, plus a curvature term of 0.16).",
              hint="L'(theta) = 2 (theta - 3); take theta_new = theta + 0.1 L'(theta), then compute "
                   "(theta_new - 3)^2."),
    2: Choice("b", why="First-order MAML treats d theta'/d theta as the identity: the meta-gradient is the query "
                       "gradient at theta', and the term -alpha H_s grad L_q(theta') (a Hessian-vector product) "
                       "is gone.",
              wrong={"a": "the inner step is what MAML adapts with; first-order MAML keeps it (theta' is the same).",
                     "c": "the query loss is the objective; without it there would be no meta-gradient at all."}),
    3: Choice("b", why="Reptile adapts each task from theta and moves theta a fraction of the way towards the mean "
                       "adapted parameters; the library hands theta - mean theta' to Adam as a gradient.",
              wrong={"a": "that is first-order MAML's direction. Reptile uses no query gradient: it moves towards "
                          "the adapted parameters themselves.",
                     "c": "that is Reptile with the sign flipped: it moves away from every task's solution."}),
    4: Number(_one_dimensional_meta_gradient,
              why="theta' = 0 - 0.1 * 2 (0 - 2) = 0.4; L_q'(theta') = 2 (0.4 - 1) = -1.2; d theta'/d theta = "
                  "1 - 0.1 * 2 = 0.8; so -0.96. First-order MAML would give -1.2.",
              hint="One inner step theta' = theta - alpha L_s'(theta); the meta-gradient is (1 - alpha L_s''(theta)) "
                   "L_q'(theta'), with L_s'' = 2."),
}, hints=["Questions 1 and 4 are a few lines of arithmetic (or of autograd on scalars); 2 and 3 are in sections "
          "3 and 7.",
          "For 1, the update adds the gradient; for 4, differentiate through the inner step (Exercise 2 in one "
          "dimension)."])


__all__ = ["check_inner_loop", "check_linear_meta_gradient", "check_climbs", "check_reptile_update",
           "check_self_check_05"]
