"""Meta-training (every method and problem, through the kit's one training run) and evaluation with a 95% interval.

    history = meta_train(model, sample, cfg, generator=gen, checkpoint="runs/maml.pt")
    score = evaluate(model, sample_test, cfg, n_tasks=600, generator=gen)   # Score(mean, ci95, n_tasks)

`sample(meta_batch, generator)` returns a batch of tasks (`course_lib.data.Episodes`). The run (plan,
checkpoints, exact resume, progress) is `course_lib.training.TrainingRun`, the same as SimCLR's: a run
interrupted and restarted ends with exactly the parameters of an uninterrupted one (on a CPU; cuDNN's
convolution backward on a GPU is not deterministic by default, so there it matches to within rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from course_lib.meta.core import MetaConfig, check_labels, meta_loss, meta_step
from course_lib.meta.protonet import protonet_loss, protonet_step
from course_lib.optim import learning_rate
from course_lib.distributed import is_main, world
from course_lib.training import History, TrainingRun, config_identity

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
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One outer step of cfg.method; returns (loss, per-task metric (T,)), detached, on the model's device."""
    if cfg.method == "protonet":
        return protonet_step(model, optimizer, tasks, impl, cfg.metric)
    return meta_step(model, optimizer, tasks, cfg, impl)


def outer_lr(cfg: MetaConfig, step: int, total_steps: int) -> float:
    """The outer learning rate of `step` in a run of `total_steps` (cfg.lr_schedule: constant, or cosine to 0)."""
    if cfg.lr_schedule == "constant":
        return cfg.meta_lr
    return learning_rate(step, total_steps, 0, cfg.meta_lr)


IGNORED = ("eval_inner_steps",)  # config fields that do not change training: a resume may change them


def meta_train(model: nn.Module, sample: Sampler, cfg: MetaConfig, *, generator: torch.Generator,
               checkpoint: str | Path | None = None, checkpoint_every_s: float = 60.0, stop_after: int | None = None,
               setup: Mapping[str, str] | None = None, impl: str = "vmap", progress: bool = True) -> History:
    """Train `model` in place for cfg.steps outer steps, or what fits in cfg.budget_s; returns the History.

    history.per_step holds "loss" (the meta-loss) and "metric" (the meta-batch's mean query metric) of
    every step. checkpoint: resumed if it exists (same config), written every `checkpoint_every_s`
    seconds of training and at the end. stop_after: stop after this many steps in this call (to show an
    interrupted run; calling again resumes). setup: what else defines the run besides `cfg` (the data and
    the network, e.g. `omniglot.run_identity(config)`), which a resume must match too. The run itself
    is `course_lib.training.TrainingRun`. Across ranks (`course_lib.distributed`, under torchrun) each rank
    trains on meta_batch / ranks tasks of its own and the meta-gradient is averaged over all of them.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.meta_lr)
    model.train()  # BatchNorm on batch statistics, always
    rank, size = world()
    if cfg.meta_batch % size:
        raise ValueError(f"meta_batch {cfg.meta_batch} does not split over {size} ranks; use a multiple of {size} "
                         "(meta_batch is the whole meta-batch: each rank takes meta_batch / ranks tasks).")
    base_seed = generator.initial_seed()

    labels_checked = cfg.loss != "cross_entropy"  # the first batch's labels are checked on any device, once

    def step(s: int) -> dict[str, torch.Tensor]:
        nonlocal labels_checked
        if size > 1:   # each rank its own tasks, drawn from (seed, rank, step): a resume needs no rank's state
            generator.manual_seed((base_seed * 1_000_003 + (s * size + rank) * 7_919) % 2**63)
        tasks = sample(cfg.meta_batch // size, generator)
        if not labels_checked:
            check_labels(tasks, getattr(model, "n_way", None) if cfg.method != "protonet" else None)
            labels_checked = True
        loss, metric = train_step(model, optimizer, tasks, cfg, impl)
        return {"loss": loss, "metric": metric.mean()}

    run = TrainingRun(step, model=model, optimizer=optimizer, generators=[generator], steps=cfg.steps,
                      budget_s=cfg.budget_s, lr=lambda s, total: outer_lr(cfg, s, total),
                      identity={**config_identity(cfg, IGNORED), **{f"setup.{k}": v for k, v in dict(setup or {}).items()},
                                **({"ranks": str(size)} if size > 1 else {})},
                      kind="meta", checkpoint=checkpoint, checkpoint_every_s=checkpoint_every_s,
                      stop_after=stop_after, progress=progress and is_main(), desc=cfg.method)
    return run.train()


def score_tasks(score: Callable[[object], torch.Tensor], sample: Sampler, *, n_tasks: int, generator: torch.Generator,
                batch: int = 25, percent: bool = True) -> Score:
    """Mean of `score(tasks) -> (T,)` over `n_tasks` fresh tasks drawn `batch` at a time, with its 95% interval."""
    metrics, done = [], 0
    while done < n_tasks:
        metrics.append(score(sample(min(batch, n_tasks - done), generator)))
        done += metrics[-1].numel()
    return mean_ci95(torch.cat(metrics), percent)


def evaluate(model: nn.Module, sample: Sampler, cfg: MetaConfig, *, n_tasks: int, generator: torch.Generator,
             batch: int = 25, inner_steps: int | None = None, impl: str = "vmap") -> Score:
    """Mean query metric over `n_tasks` fresh tasks with its 95% interval (accuracy, or MSE for regression).

    MAML-family methods adapt on each support set with cfg.eval_inner_steps (or `inner_steps`) SGD
    steps of cfg.inner_lr; ProtoNet classifies by distance to prototypes. The model is not changed.
    """
    steps = cfg.eval_inner_steps if inner_steps is None else inner_steps

    def score(tasks) -> torch.Tensor:
        if cfg.method == "protonet":
            return protonet_loss(model, tasks, impl, cfg.metric)[1]
        return meta_loss(model, tasks, inner_lr=cfg.inner_lr, inner_steps=steps, first_order=True, loss=cfg.loss,
                         impl=impl)[1]

    model.train()
    with torch.no_grad():  # adaptation still takes gradients: torch.func.grad ignores an outer no_grad
        return score_tasks(score, sample, n_tasks=n_tasks, generator=generator, batch=batch,
                           percent=cfg.loss == "cross_entropy")


__all__ = ["Sampler", "Score", "mean_ci95", "train_step", "outer_lr", "meta_train", "score_tasks", "evaluate"]
