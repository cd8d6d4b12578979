"""Exercises of notebook 05 (MAML): the inner loop, the meta-gradient of one step by hand, and the notebook's
self-check (its exercises on the meta-update itself, `climbs` and `reptile_update`, are in meta_updates.py).

The references are the library's functional MAML (`course_lib.meta.core.adapt_reference`) run on small
modules, so a learner's code is compared with the code the course trains with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.checks.quiz import Choice, Number, self_check
from course_lib.meta.core import adapt, adapt_reference, meta_loss, sgd_steps

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
    library=(adapt, sgd_steps, adapt_reference),
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
    library=(meta_loss,),
))


def check_linear_meta_gradient(linear_meta_gradient) -> None:
    """Check `linear_meta_gradient(w, x_s, y_s, x_q, y_q, inner_lr) -> (d,)` against autograd."""
    return check("linear_meta_gradient", linear_meta_gradient)


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


__all__ = ["check_inner_loop", "check_linear_meta_gradient", "check_self_check_05"]
