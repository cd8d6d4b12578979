"""What an outer step costs: seconds, and the memory its backward pass has to keep.

Second-order MAML keeps every inner step's activations alive until the outer backward (the graph
through the inner gradients); first-order MAML keeps only the query pass; Reptile keeps nothing (it
never backpropagates through adaptation). `graph_bytes(loss)` measures exactly that, on any device:
it walks the autograd graph behind `loss` and adds up the distinct storages saved for backward.
On CUDA, `step_cost` also reports the allocator's peak.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from course_lib.meta.core import MetaConfig, meta_loss, meta_step, reptile_direction


def graph_bytes(loss: torch.Tensor) -> int:
    """Bytes of the distinct tensor storages that the autograd graph of `loss` saved for backward."""
    storages: dict[int, int] = {}
    stack, visited = [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for name in dir(node):
            if not name.startswith("_saved_"):
                continue
            try:
                value = getattr(node, name)
            except RuntimeError:  # a saved tensor already freed by an earlier backward
                continue
            for t in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(t, torch.Tensor):
                    storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        stack.extend(fn for fn, _ in node.next_functions)
    return sum(storages.values())


def step_cost(model: nn.Module, tasks, cfg: MetaConfig, repeats: int = 3, impl: str = "vmap") -> dict:
    """Cost of one outer step of cfg.method on `tasks` (the model is updated by a throwaway SGD).

    Returns {"seconds": median wall-clock seconds per step, "graph_MB": memory held for the outer
    backward (0 for Reptile), "peak_MB": CUDA allocator peak or None on other devices}.
    """
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: timing must not change the model
    if cfg.method == "reptile":
        graph = 0
    else:
        loss, _ = meta_loss(model, tasks, inner_lr=cfg.inner_lr, inner_steps=cfg.inner_steps,
                            first_order=cfg.method == "fomaml", loss=cfg.loss, impl=impl)
        graph = graph_bytes(loss)
        del loss
    times = []
    for i in range(repeats + 1):  # the first run warms up
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        tic = time.perf_counter()
        if cfg.method == "reptile":
            reptile_direction(model, tasks, inner_lr=cfg.inner_lr, inner_steps=cfg.inner_steps, loss=cfg.loss, impl=impl)
        else:
            meta_step(model, optimizer, tasks, cfg, impl)
        if cuda:
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - tic)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return {"seconds": sorted(times)[len(times) // 2], "graph_MB": graph / 2**20, "peak_MB": peak}


__all__ = ["graph_bytes", "step_cost"]
