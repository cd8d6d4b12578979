"""Functional MAML: adapt a dict of parameters on a task's support set, score it on the query set.

The model is an ordinary `nn.Module`; we never mutate it during adaptation. Its parameters are a
dict `params = dict(model.named_parameters())`, and `functional_call(model, params, (x,))` runs it
with any such dict, e.g. the adapted copy after `inner_steps` SGD steps:

    theta'  = theta - inner_lr * grad_theta L_support(theta)          (repeated inner_steps times)
    meta-loss = L_query(theta'),  meta-gradient = d L_query(theta') / d theta

Second-order MAML differentiates through the inner gradient (a Hessian-vector product appears);
first-order MAML treats the inner gradient as a constant (d theta'/d theta = I). Reptile moves theta
towards theta' and needs no query loss at all.

Two implementations of the same maths sit side by side (`impl=`):
- "loop": the reference. One task at a time, `torch.autograd.grad(create_graph=...)`.
- "vmap": the fast path. The per-task function uses `torch.func.grad` for the inner loop and is
  batched over tasks with `torch.func.vmap`, so a meta-batch is a handful of big kernels instead of
  `meta_batch` small ones. Gradients to theta flow through `torch.func.grad` by ordinary autograd.
Tests check that both give the same losses and the same meta-gradients.

Tasks are given batched, as `course_lib.data.Episodes`: x_support (T, S, *x), y_support (T, S[, *y]),
x_query (T, Q, *x), y_query (T, Q[, *y]) (any object with these four attributes works).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from course_lib.distributed import average_gradients

Params = dict[str, torch.Tensor]
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": F.cross_entropy,  # classification: y holds class indices (long)
    "mse": F.mse_loss,  # regression: y has the output's shape
}
METHODS = ("maml", "fomaml", "reptile", "protonet")
METRICS = ("euclidean", "cosine")  # ProtoNet's distances to prototypes (see protonet.py)
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class MetaConfig:
    """How to meta-train; presets per tier live with each problem (sinusoid, Omniglot)."""

    method: str = "maml"  # maml (second order) | fomaml (first order) | reptile | protonet
    inner_lr: float = 0.4  # SGD step size of the inner loop (Omniglot: 0.4 in the MAML paper)
    inner_steps: int = 1  # inner SGD steps while meta-training
    eval_inner_steps: int = 3  # inner SGD steps at test time (MAML uses more than in training)
    meta_lr: float = 1e-3  # Adam step size of the outer loop
    meta_batch: int = 32  # tasks per outer step
    steps: int = 1000  # outer steps, or fewer: as many as fit in budget_s
    budget_s: float | None = None  # seconds of training at most (turned into steps once); None: no limit
    loss: str = "cross_entropy"  # key of LOSSES
    # "constant", or "cosine": meta_lr decays to 0 at the run's last step (with a budget, the last step
    # that fits it, so a short run ends on a low learning rate on any machine)
    lr_schedule: str = "constant"
    metric: str = "euclidean"  # ProtoNet's distance to prototypes: "euclidean" (squared) or "cosine"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {self.loss!r}.")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}.")
        check_inner(self.inner_lr, self.inner_steps)
        check_inner(self.inner_lr, self.eval_inner_steps)
        for name in ("meta_batch", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not (isinstance(self.meta_lr, (int, float)) and math.isfinite(self.meta_lr) and self.meta_lr > 0):
            raise ValueError(f"meta_lr must be a finite number > 0 (the outer Adam step size), got {self.meta_lr!r}.")


def check_inner(inner_lr: float, inner_steps: int) -> None:
    """Raise a clear ValueError for an inner loop that cannot adapt anything."""
    if not isinstance(inner_steps, int) or isinstance(inner_steps, bool) or inner_steps < 1:
        raise ValueError(f"inner_steps must be an int >= 1 (MAML takes at least one SGD step), got {inner_steps!r}.")
    if not inner_lr > 0:
        raise ValueError(f"inner_lr must be > 0 (it is the inner SGD step size), got {inner_lr!r}.")


def check_tasks(tasks) -> None:
    """Raise a ValueError that names the tensor if the four task tensors disagree in shape."""
    xs, ys, xq, yq = tasks.x_support, tasks.y_support, tasks.x_query, tasks.y_query
    if xs.dim() < 3 or xq.dim() < 3:
        raise ValueError(f"x_support and x_query must be (T, S, *x) and (T, Q, *x); got {tuple(xs.shape)} and {tuple(xq.shape)}.")
    if not (xs.shape[0] == ys.shape[0] == xq.shape[0] == yq.shape[0]):
        raise ValueError(f"all task tensors need the same number of tasks T in dim 0; got x_support {tuple(xs.shape)}, "
                         f"y_support {tuple(ys.shape)}, x_query {tuple(xq.shape)}, y_query {tuple(yq.shape)}.")
    if ys.shape[:2] != xs.shape[:2] or yq.shape[:2] != xq.shape[:2]:
        raise ValueError(f"labels must match inputs in (T, examples): x_support {tuple(xs.shape)} vs y_support "
                         f"{tuple(ys.shape)}, x_query {tuple(xq.shape)} vs y_query {tuple(yq.shape)}.")
    if xs.shape[2:] != xq.shape[2:]:
        raise ValueError(f"support and query inputs must have the same shape per example; got {tuple(xs.shape[2:])} "
                         f"and {tuple(xq.shape[2:])}.")


def check_labels(tasks, n_classes: int | None = None) -> int:
    """The number of classes N of class-labelled tasks, after checking that every label lies in 0..N-1.

    N is `n_classes` (a classifier head's width) or, when None, the largest support label + 1; off the
    GPU, every class must also have a support example in every task (a prototype needs one). Raises a
    ValueError that names the tensor and the remedy. It reads the labels on the host: free on the CPU,
    one wait for the device on a GPU, so `meta_loss` checks only labels off the GPU (the training loop
    checks the first batch of every run wherever it lives).
    """
    ys, yq = tasks.y_support, tasks.y_query
    low_s, low_q, high_s, high_q = torch.stack([ys.min(), yq.min(), ys.max(), yq.max()]).tolist()  # one wait
    n = int(n_classes) if n_classes is not None else high_s + 1
    source = "the width of the model's head" if n_classes is not None else "from the support labels"
    remedy = "label each task's classes 0..N-1 (sample_episodes does)" + (
        ", or build the model with as many outputs as classes." if n_classes is not None else ".")
    for name, low, high in (("y_support", low_s, high_s), ("y_query", low_q, high_q)):
        if low < 0 or high >= n:
            raise ValueError(f"{name} holds labels {low}..{high}, but the tasks have {n} classes ({source}), "
                             f"labels 0..{n - 1}: {remedy}")
    if ys.device.type != "cuda":
        present = F.one_hot(ys, n).amax(dim=1)                                       # (T, N): class has support
        if not bool(present.all()):
            task, cls = (present == 0).nonzero()[0].tolist()
            raise ValueError(f"y_support: task {task} has no example of class {cls} (labels 0..{n - 1}): {remedy}")
    return n


def _check_labels_off_gpu(model: nn.Module, tasks, loss: str) -> None:
    if loss == "cross_entropy" and tasks.y_support.device.type != "cuda":
        check_labels(tasks, getattr(model, "n_way", None))


def parameters(model: nn.Module) -> Params:
    """The model's parameters as the dict the functional code takes (same tensors, not copies)."""
    return dict(model.named_parameters())


def _metric(loss: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy for classification, the (detached) loss for regression; a scalar per task."""
    if loss == "cross_entropy":
        return (out.argmax(-1) == y).float().mean()
    return LOSSES[loss](out, y).detach()


def adapt(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, *, inner_lr: float,
          inner_steps: int, first_order: bool = False, loss: str = "cross_entropy") -> Params:
    """Adapted parameters after `inner_steps` SGD steps on (x, y) of ONE task; works inside vmap.

    x: (S, *x), y: (S[, *y]). Uses `torch.func.grad`; with `first_order` the inner gradients are
    detached, so the result depends on `params` only through the identity (d theta'/d theta = I).
    """
    loss_fn = LOSSES[loss]

    def support_loss(p: Params) -> torch.Tensor:
        return loss_fn(functional_call(model, p, (x,)), y)

    for _ in range(inner_steps):
        grads = grad(support_loss)(params)
        params = {k: params[k] - inner_lr * (grads[k].detach() if first_order else grads[k]) for k in params}
    return params


def sgd_steps(params: Params, loss_fn: Callable[[Params], torch.Tensor], *, inner_lr: float, inner_steps: int,
              first_order: bool = False) -> Params:
    """The reference inner loop: `inner_steps` SGD steps on `loss_fn(params)` with `torch.autograd.grad`.

    Returns a new dict; with `first_order=False` each step keeps its gradient in the graph
    (`create_graph=True`), so the result is a differentiable function of `params` and backpropagating
    through it produces the second-order (Hessian-vector) term. A parameter the loss does not use stays.
    """
    # Evaluation passes detached parameters (and may run under no_grad): adaptation still needs a graph.
    params = {k: p if p.requires_grad else p.detach().requires_grad_() for k, p in params.items()}
    with torch.enable_grad():
        for _ in range(inner_steps):
            grads = torch.autograd.grad(loss_fn(params), list(params.values()), create_graph=not first_order,
                                        allow_unused=True)
            params = {k: p if g is None else p - inner_lr * g for (k, p), g in zip(params.items(), grads)}
    return params


def adapt_reference(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, *, inner_lr: float,
                    inner_steps: int, first_order: bool = False, loss: str = "cross_entropy") -> Params:
    """The same as `adapt`, one task at a time with `sgd_steps` (not usable inside vmap)."""
    loss_fn = LOSSES[loss]
    return sgd_steps(params, lambda p: loss_fn(functional_call(model, p, (x,)), y), inner_lr=inner_lr,
                     inner_steps=inner_steps, first_order=first_order)


def meta_loss(model: nn.Module, tasks, *, inner_lr: float, inner_steps: int, first_order: bool = False,
              loss: str = "cross_entropy", impl: str = "vmap", params: Params | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean query loss over T tasks after adaptation, and the per-task metric.

    Returns (loss: scalar, differentiable w.r.t. `params` (default: the model's own),
             metric: (T,) query accuracy for cross_entropy, query MSE for mse).
    impl: "vmap" (fast, batched over tasks) or "loop" (reference); same values and gradients.
    """
    check_inner(inner_lr, inner_steps)
    check_tasks(tasks)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {loss!r}.")
    _check_labels_off_gpu(model, tasks, loss)
    params = parameters(model) if params is None else params
    kw = dict(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order, loss=loss)
    loss_fn = LOSSES[loss]
    if impl == "loop":
        losses, metrics = [], []
        for xs, ys, xq, yq in zip(tasks.x_support, tasks.y_support, tasks.x_query, tasks.y_query):
            out = functional_call(model, adapt_reference(model, params, xs, ys, **kw), (xq,))
            losses.append(loss_fn(out, yq))
            metrics.append(_metric(loss, out, yq))
        return torch.stack(losses).mean(), torch.stack(metrics)
    if impl != "vmap":
        raise ValueError(f"impl must be 'vmap' or 'loop', got {impl!r}.")

    def one_task(p: Params, xs, ys, xq, yq):
        out = functional_call(model, adapt(model, p, xs, ys, **kw), (xq,))
        return loss_fn(out, yq), _metric(loss, out, yq)

    losses, metrics = vmap(one_task, in_dims=(None, 0, 0, 0, 0))(
        params, tasks.x_support, tasks.y_support, tasks.x_query, tasks.y_query)
    return losses.mean(), metrics


def reptile_direction(model: nn.Module, tasks, *, inner_lr: float, inner_steps: int, loss: str = "cross_entropy",
                      impl: str = "vmap") -> Params:
    """Reptile's update direction theta - mean_t theta'_t (use it as a gradient), adapting on support + query.

    Reptile never differentiates through adaptation: it adapts each task from theta and moves theta
    towards the average of the adapted parameters.
    """
    check_inner(inner_lr, inner_steps)
    check_tasks(tasks)
    _check_labels_off_gpu(model, tasks, loss)
    params = {k: p.detach() for k, p in parameters(model).items()}
    x = torch.cat([tasks.x_support, tasks.x_query], dim=1)  # (T, S+Q, *x): Reptile trains on all of a task
    y = torch.cat([tasks.y_support, tasks.y_query], dim=1)
    kw = dict(inner_lr=inner_lr, inner_steps=inner_steps, first_order=True, loss=loss)
    if impl == "loop":
        adapted = [adapt_reference(model, params, xt, yt, **kw) for xt, yt in zip(x, y)]
        mean = {k: torch.stack([a[k].detach() for a in adapted]).mean(0) for k in params}
    elif impl == "vmap":
        batched = vmap(lambda xt, yt: adapt(model, params, xt, yt, **kw))(x, y)
        mean = {k: v.detach().mean(0) for k, v in batched.items()}
    else:
        raise ValueError(f"impl must be 'vmap' or 'loop', got {impl!r}.")
    return {k: params[k] - mean[k] for k in params}


def meta_step(model: nn.Module, optimizer: torch.optim.Optimizer, tasks, cfg: MetaConfig,
              impl: str = "vmap") -> tuple[torch.Tensor, torch.Tensor]:
    """One outer step of `cfg.method` (maml, fomaml, reptile) on a batch of tasks.

    Returns (the meta-loss, the per-task query metric (T,) before the update), detached tensors.
    """
    optimizer.zero_grad(set_to_none=True)
    kw = dict(inner_lr=cfg.inner_lr, inner_steps=cfg.inner_steps, loss=cfg.loss, impl=impl)
    if cfg.method in ("maml", "fomaml"):
        loss, metric = meta_loss(model, tasks, first_order=cfg.method == "fomaml", **kw)
        loss.backward()
    elif cfg.method == "reptile":
        direction = reptile_direction(model, tasks, **kw)
        for name, p in model.named_parameters():
            p.grad = direction[name]
        with torch.no_grad():
            loss, metric = meta_loss(model, tasks, first_order=True, **kw)
    else:
        raise ValueError(f"meta_step runs maml, fomaml or reptile; {cfg.method!r} has its own step "
                         "(course_lib.meta.protonet_step).")
    average_gradients(model)   # across ranks, the mean over every rank's tasks (course_lib.distributed)
    optimizer.step()
    return loss.detach(), metric.detach()


__all__ = ["Params", "LOSSES", "METHODS", "METRICS", "LR_SCHEDULES", "MetaConfig", "check_inner", "check_labels",
           "check_tasks", "parameters", "adapt", "sgd_steps", "adapt_reference", "meta_loss", "reptile_direction", "meta_step"]
