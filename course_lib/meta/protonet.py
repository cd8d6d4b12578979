"""Prototypical networks: classify a query by its distance to class prototypes.

No adaptation at test time: an encoder maps every image to a feature vector, a class's prototype is
the mean feature of its support examples, and the logits are minus the squared distances

    logits[q, c] = -|| f(x_q) - mean_{k: y_k = c} f(x_k) ||^2        (metric="euclidean", the paper's)

or the cosine similarity over a temperature, cos(f(x_q), prototype_c) / PROTOTYPE_TEMPERATURE
(metric="cosine": the similarity NT-Xent trains, so the classifier for a contrastive encoder's features).
The same classifier serves a frozen encoder that never saw a label (notebook 07).

Trained end to end with cross-entropy over episodes, it is the strong, simple baseline MAML is compared
with. Tasks are batched with `vmap` like MAML (BatchNorm then uses each task's own statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from course_lib.distributed import average_gradients
from course_lib.meta.core import METRICS, check_labels, check_tasks, parameters
from course_lib.similarity import squared_distances

PROTOTYPE_TEMPERATURE = 0.1  # scales cosine logits; it changes the loss, never which class wins


def prototypes(features: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Mean feature per class. features: float (S, D), labels: long (S,) in 0..n_way-1 -> float (n_way, D)."""
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"expected features (S, D) and labels (S,); got {tuple(features.shape)} and {tuple(labels.shape)}.")
    onehot = F.one_hot(labels, n_way).to(features.dtype)  # (S, N)
    return onehot.T @ features / onehot.sum(0).clamp_min(1).unsqueeze(1)  # (N, D)


def protonet_logits(support: torch.Tensor, y_support: torch.Tensor, query: torch.Tensor, n_way: int,
                    metric: str = "euclidean") -> torch.Tensor:
    """Logits (Q, N) of query features (Q, D) against the prototypes of support features (S, D):
    minus the squared distance ("euclidean"), or the cosine similarity / PROTOTYPE_TEMPERATURE ("cosine")."""
    if metric == "cosine":
        protos = F.normalize(prototypes(F.normalize(support, dim=1), y_support, n_way), dim=1)   # (N, D)
        return F.normalize(query, dim=1) @ protos.T / PROTOTYPE_TEMPERATURE
    if metric != "euclidean":
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    return -squared_distances(query, prototypes(support, y_support, n_way))


def protonet_loss(model: nn.Module, tasks, impl: str = "vmap", metric: str = "euclidean"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean query cross-entropy over T tasks and the per-task query accuracy (T,).

    model(x, head=False) must return features (B, D) (e.g. `Conv4(n_way=None)`). impl: "vmap" or "loop".
    metric: "euclidean" or "cosine" (see `protonet_logits`).
    """
    check_tasks(tasks)
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    n_way = check_labels(tasks)  # a Python int (one_hot needs it outside vmap), from one read of the labels
    params = parameters(model)

    def one_task(p, xs, ys, xq, yq):
        s = tasks.x_support.shape[1]
        feats = functional_call(model, p, (torch.cat([xs, xq]),), {"head": False})  # (S+Q, D)
        logits = protonet_logits(feats[:s], ys, feats[s:], n_way, metric)  # (Q, N)
        return F.cross_entropy(logits, yq), (logits.argmax(-1) == yq).float().mean()

    args = (tasks.x_support, tasks.y_support, tasks.x_query, tasks.y_query)
    if impl == "loop":
        losses, accs = zip(*[one_task(params, *task) for task in zip(*args)])
        losses, accs = torch.stack(losses), torch.stack(accs)
    elif impl == "vmap":
        losses, accs = vmap(one_task, in_dims=(None, 0, 0, 0, 0))(params, *args)
    else:
        raise ValueError(f"impl must be 'vmap' or 'loop', got {impl!r}.")
    return losses.mean(), accs


def protonet_step(model: nn.Module, optimizer: torch.optim.Optimizer, tasks, impl: str = "vmap",
                  metric: str = "euclidean") -> tuple[torch.Tensor, torch.Tensor]:
    """One training step on a batch of episodes; returns (loss, per-task accuracy (T,) before the step)."""
    optimizer.zero_grad(set_to_none=True)
    loss, acc = protonet_loss(model, tasks, impl, metric)
    loss.backward()
    average_gradients(model)   # across ranks, the mean over every rank's episodes (course_lib.distributed)
    optimizer.step()
    return loss.detach(), acc.detach()


__all__ = ["PROTOTYPE_TEMPERATURE", "prototypes", "squared_distances", "protonet_logits", "protonet_loss",
           "protonet_step"]
