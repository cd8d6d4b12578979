"""Exercises of notebook 05 (MAML): write the inner loop; derive the meta-gradient of one step by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.meta.core import adapt_reference

# ---------------------------------------------------------------- inner_loop
# The learner writes inner_loop(params, loss_fn, inner_lr, inner_steps, first_order) -> adapted dict.
# The framework compares tensors, so both functions are run on a tiny two-layer tanh network whose
# parameters are the positional inputs; gradients w.r.t. them test the second-order term.


def _tiny_loss(x: torch.Tensor, y: torch.Tensor):
    def loss_fn(p: dict) -> torch.Tensor:
        return F.mse_loss(torch.tanh(x @ p["w1"] + p["b1"]) @ p["w2"], y)

    return loss_fn


def _as_tensor_fn(inner_loop):
    def run(w1, b1, w2, x, y, inner_lr, inner_steps, first_order):
        adapted = inner_loop({"w1": w1, "b1": b1, "w2": w2}, _tiny_loss(x, y), inner_lr, inner_steps, first_order)
        if not isinstance(adapted, dict) or set(adapted) != {"w1", "b1", "w2"}:
            raise TypeError("inner_loop must return a dict with the same keys as params ('w1', 'b1', 'w2').")
        return adapted["w1"], adapted["b1"], adapted["w2"]

    return run


def _inner_loop_reference(params, loss_fn, inner_lr, inner_steps, first_order=False):
    for _ in range(inner_steps):
        grads = torch.autograd.grad(loss_fn(params), list(params.values()), create_graph=not first_order)
        params = {k: p - inner_lr * g for (k, p), g in zip(params.items(), grads)}
    return params


def _inner_case(steps: int, first_order: bool):
    def make(gen):
        d, h, n = 3, 4, 6
        return (0.5 * torch.randn(d, h, generator=gen), 0.1 * torch.randn(h, generator=gen),
                0.5 * torch.randn(h, 1, generator=gen), torch.randn(n, d, generator=gen),
                torch.randn(n, 1, generator=gen), 0.1, steps, first_order)
    return make


register(Exercise(
    name="inner_loop",
    reference=_as_tensor_fn(_inner_loop_reference),
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
    solution='''def inner_loop(params, loss_fn, inner_lr, inner_steps, first_order=False):
    for _ in range(inner_steps):
        loss = loss_fn(params)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order)
        params = {name: p - inner_lr * g for (name, p), g in zip(params.items(), grads)}
    return params''',
))


def check_inner_loop(inner_loop) -> None:
    """Check `inner_loop(params, loss_fn, inner_lr, inner_steps, first_order) -> dict` (values and gradients)."""
    return check("inner_loop", _as_tensor_fn(inner_loop))


# ---------------------------------------------------------------- linear_meta_gradient
# Linear regression f(x) = x @ w, L(w) = mean((X w - y)^2). One inner step w' = w - a grad L_s(w);
# the meta-gradient is d L_q(w') / d w = (I - a H_s) grad L_q(w'), H_s = 2/n_s X_s^T X_s.


def _linear_meta_gradient_reference(w, x_s, y_s, x_q, y_q, inner_lr):
    w = w.detach().requires_grad_(True)
    params = adapt_reference(_Linear(), {"w": w}, x_s, y_s, inner_lr=inner_lr, inner_steps=1, loss="mse")
    return torch.autograd.grad(F.mse_loss(x_q @ params["w"], y_q), w)[0]


class _Linear(torch.nn.Module):
    """x @ w as a module so the library's adapt_reference (functional_call) can run it."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x @ self.w


def _linear_case(d: int, n_s: int, n_q: int, lr: float):
    def make(gen):
        return (torch.randn(d, generator=gen), torch.randn(n_s, d, generator=gen), torch.randn(n_s, generator=gen),
                torch.randn(n_q, d, generator=gen), torch.randn(n_q, generator=gen), lr)
    return make


register(Exercise(
    name="linear_meta_gradient",
    reference=_linear_meta_gradient_reference,
    cases=[Case("d=3, 5 support, 7 query", _linear_case(3, 5, 7, 0.05)),
           Case("d=1", _linear_case(1, 4, 4, 0.1)),
           Case("d=8, big step", _linear_case(8, 10, 12, 0.3))],
    hints=["Write the three pieces: g_s = 2/n_s X_s^T (X_s w - y_s); w' = w - inner_lr g_s; "
           "g_q = 2/n_q X_q^T (X_q w' - y_q).",
           "The chain rule through w' = w - a g_s(w) gives dw'/dw = I - a H_s with the Hessian H_s = 2/n_s X_s^T X_s "
           "(constant for a linear model).",
           "meta-gradient = (I - inner_lr * H_s) @ g_q. Dropping the H_s term gives first-order MAML."],
    rtol=1e-4, atol=1e-5,
    solution='''def linear_meta_gradient(w, x_s, y_s, x_q, y_q, inner_lr):
    n_s, n_q = len(y_s), len(y_q)
    g_s = 2 / n_s * x_s.T @ (x_s @ w - y_s)           # gradient of the support loss at w
    w_adapted = w - inner_lr * g_s                      # one inner SGD step
    g_q = 2 / n_q * x_q.T @ (x_q @ w_adapted - y_q)     # gradient of the query loss at w'
    hessian = 2 / n_s * x_s.T @ x_s                     # of the support loss (constant)
    return (torch.eye(len(w)) - inner_lr * hessian) @ g_q''',
))


def check_linear_meta_gradient(linear_meta_gradient) -> None:
    """Check `linear_meta_gradient(w, x_s, y_s, x_q, y_q, inner_lr) -> (d,)` against autograd."""
    return check("linear_meta_gradient", linear_meta_gradient)


__all__ = ["check_inner_loop", "check_linear_meta_gradient"]
