"""The meta-training loop (written once, for every method and problem), evaluation with a 95% interval.

    history = meta_train(model, sample, cfg, generator=gen, checkpoint="runs/maml.pt")
    score = evaluate(model, sample_test, cfg, n_tasks=600, generator=gen)   # Score(mean, ci95, n_tasks)

`sample(meta_batch, generator)` returns a batch of tasks (`Tasks` or `course_lib.data.Episodes`).
With `checkpoint=`, the loop saves model, optimizer, step, history, every RNG state and the config
through `course_lib.checkpoint` (the same mechanism as SimCLR's) and resumes from it when the file
exists and was written with the same config: a run interrupted and restarted ends with exactly the
parameters of an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from course_lib.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from course_lib.meta.core import MetaConfig, meta_loss, meta_step
from course_lib.meta.protonet import protonet_loss, protonet_step
from course_lib.optim import learning_rate

Sampler = Callable[[int, torch.Generator], object]  # (meta_batch, generator) -> tasks


@dataclass(frozen=True)
class Score:
    """Mean of a per-task metric with the half-width of its 95% confidence interval."""

    mean: float
    ci95: float  # 1.96 standard errors of the mean over tasks
    n_tasks: int
    percent: bool = True  # an accuracy (printed in %); False for an error such as an MSE

    def __str__(self) -> str:
        if self.percent:
            return f"{100 * self.mean:.1f}% ± {100 * self.ci95:.1f} ({self.n_tasks} tasks)"
        return f"{self.mean:.3f} ± {self.ci95:.3f} ({self.n_tasks} tasks)"


def mean_ci95(values: torch.Tensor, percent: bool = True) -> Score:
    """Score of per-task values (n,): mean and 1.96 * sample std / sqrt(n) (normal approximation)."""
    values = values.detach().double().flatten()
    n = values.numel()
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 tasks, got {n}.")
    return Score(values.mean().item(), 1.96 * values.std().item() / math.sqrt(n), n, percent)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, tasks, cfg: MetaConfig, impl: str = "vmap"
               ) -> tuple[float, torch.Tensor]:
    """One outer step of cfg.method; returns (loss, per-task metric (T,))."""
    if cfg.method == "protonet":
        return protonet_step(model, optimizer, tasks, impl)
    return meta_step(model, optimizer, tasks, cfg, impl)


def outer_lr(cfg: MetaConfig, step: int, elapsed: float) -> float:
    """The outer learning rate for `step`, after `elapsed` seconds of training (see cfg.lr_schedule).

    Computed from the step and the clock alone (no scheduler state), so a resumed run continues the
    same schedule.
    """
    if cfg.lr_schedule == "constant":
        return cfg.meta_lr
    progress = step / cfg.steps
    if cfg.time_budget_s is not None:
        progress = max(progress, elapsed / cfg.time_budget_s)
    return learning_rate(step, cfg.steps, 0, cfg.meta_lr, progress)


def _identity(cfg: MetaConfig) -> str:
    """The config fields that define the training maths; a time budget or the test-time steps may change."""
    return repr(replace(cfg, time_budget_s=None, eval_inner_steps=1))


def meta_train(model: nn.Module, sample: Sampler, cfg: MetaConfig, *, generator: torch.Generator,
               checkpoint: str | Path | None = None, checkpoint_every: int = 100, log_every: int = 100,
               stop_after: int | None = None, impl: str = "vmap") -> dict:
    """Train `model` in place for cfg.steps outer steps (or until cfg.time_budget_s); return the history.

    history: {"step": [...], "loss": [...], "metric": [...] (mean over the meta-batch), "seconds": [...]
    (training time so far, summed over resumed runs)}, one entry per `log_every` steps.
    checkpoint: file to save to every `checkpoint_every` steps and at the end, and to resume from.
    stop_after: stop after this many steps in this call (to show an interrupted run; resume continues).
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.meta_lr)
    history = {"step": [], "loss": [], "metric": [], "seconds": []}
    start, elapsed = 0, 0.0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint, kind="maml", map_location=next(model.parameters()).device)
        if state.get("config") != _identity(cfg):
            raise CheckpointError(f"{checkpoint} was written by a run with another config:\n  {state.get('config')}\n"
                                  f"this run's config is\n  {_identity(cfg)}\n"
                                  "Use a new checkpoint path for a new config, or delete the file to start over.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], generator)
        start, elapsed, history = state["step"], state["seconds"], state["history"]
        done = " (the run is complete)" if start >= cfg.steps else ""
        print(f"resumed from {checkpoint} at step {start}/{cfg.steps}{done} ({elapsed:.0f} s of training so far)")

    def save(step: int) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, kind="maml", config=_identity(cfg), model=model.state_dict(),
                            optimizer=optimizer.state_dict(), step=step, seconds=elapsed, history=history,
                            rng=rng_state(generator))

    def log(step: int, loss: float, metric: torch.Tensor) -> None:
        for key, value in zip(history, (step, loss, metric.mean().item(), elapsed)):
            history[key].append(value)
        print(f"step {step:>5}  loss {loss:.3f}  metric {metric.mean().item():.3f}  {elapsed:.0f} s")

    step = start
    last = start + stop_after if stop_after is not None else cfg.steps
    model.train()  # BatchNorm on batch statistics, always
    while step < min(cfg.steps, last) and (cfg.time_budget_s is None or elapsed < cfg.time_budget_s):
        tic = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = outer_lr(cfg, step, elapsed)
        loss, metric = train_step(model, optimizer, sample(cfg.meta_batch, generator), cfg, impl)
        if not math.isfinite(loss):
            raise FloatingPointError(f"the meta-loss became {loss} at step {step}; lower meta_lr or inner_lr.")
        elapsed += time.perf_counter() - tic
        step += 1
        if step % log_every == 0 or step == cfg.steps:
            log(step, loss, metric)
        if step % checkpoint_every == 0:
            save(step)
    if step > start and history["step"][-1:] != [step]:  # the history always ends at the last step taken
        log(step, loss, metric)
    save(step)
    return history


def evaluate(model: nn.Module, sample: Sampler, cfg: MetaConfig, *, n_tasks: int, generator: torch.Generator,
             batch: int = 25, inner_steps: int | None = None, impl: str = "vmap") -> Score:
    """Mean query metric over `n_tasks` fresh tasks with its 95% interval (accuracy, or MSE for regression).

    MAML-family methods adapt on each support set with cfg.eval_inner_steps (or `inner_steps`) SGD
    steps of cfg.inner_lr; ProtoNet classifies by distance to prototypes. The model is not changed.
    """
    steps = cfg.eval_inner_steps if inner_steps is None else inner_steps
    metrics = []
    model.train()
    with torch.no_grad():  # adaptation still takes gradients: torch.func.grad ignores an outer no_grad
        done = 0
        while done < n_tasks:
            tasks = sample(min(batch, n_tasks - done), generator)
            if cfg.method == "protonet":
                _, metric = protonet_loss(model, tasks, impl)
            else:
                _, metric = meta_loss(model, tasks, inner_lr=cfg.inner_lr, inner_steps=steps, first_order=True,
                                      loss=cfg.loss, impl=impl)
            metrics.append(metric)
            done += metric.numel()
    return mean_ci95(torch.cat(metrics), percent=cfg.loss == "cross_entropy")


__all__ = ["Sampler", "Score", "mean_ci95", "train_step", "outer_lr", "meta_train", "evaluate"]
