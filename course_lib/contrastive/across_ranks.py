"""SimCLR's loss across ranks, and the comparison that shows why its gather must carry gradients.

    loss = nt_xent_across_ranks(z1, z2, temperature)    # this rank's views against every rank's (under torchrun)
    runs = compare_gathers(model, v1, v2)                # one step three ways: one process, 2 ranks, 2 ranks' bug

Each rank scores its own 2B views against the 2M views of the whole batch, gathered from every rank with
`course_lib.distributed.gather`; DDP's average of the ranks' gradients is then the gradient of NT-Xent on
the whole batch, provided the gather carries gradients (see `course_lib.distributed`). `compare_gathers`
checks exactly that on this machine: it starts ranks with gloo on the CPU and sets their loss and gradient
beside one process's (notebook 03; tests/test_distributed.py, in float64).
"""

from __future__ import annotations

import copy
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from course_lib.contrastive.losses import nt_xent, validate_temperature
from course_lib.distributed import gather, sync_batchnorm, world


def nt_xent_across_ranks(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
                         carry_grad: bool = True) -> torch.Tensor:
    """NT-Xent of this rank's 2B anchors against the views of every rank. Returns a scalar.

    z1, z2: (B, D), the projections of this rank's first and second views (row i of each from image i).
    The whole batch is z = [z1 of every rank; z2 of every rank] (2M, D), M = world * B, arranged as
    `losses.nt_xent` expects (the positive of row i is row i + M); this rank scores its own rows of it.
    The mean of the ranks' losses, which is what DDP's averaged gradients descend, is `nt_xent(z)`.
    """
    temperature = validate_temperature(temperature)
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must be (B, D) projections of the two views of the same B images, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}.")
    rank, size = world()
    b = len(z1)
    z = torch.cat([gather(F.normalize(z1, dim=1), carry_grad), gather(F.normalize(z2, dim=1), carry_grad)])
    m = size * b
    mine = torch.cat([torch.arange(rank * b, (rank + 1) * b), torch.arange(m + rank * b, m + (rank + 1) * b)])
    mine = mine.to(z.device)                                             # (2B,) this rank's rows of z
    logits = z[mine] @ z.T / temperature                                 # (2B, 2M)
    logits = logits.masked_fill(F.one_hot(mine, 2 * m).bool(), float("-inf"))   # a view is not its own negative
    return F.cross_entropy(logits, (mine + m) % (2 * m))                 # the positive of row i is row i + M


def compare_gathers(model: nn.Module, v1: torch.Tensor, v2: torch.Tensor, temperature: float = 0.2,
                    world_size: int = 2) -> dict[str, tuple[float, torch.Tensor]]:
    """One SimCLR step's loss and gradient three ways: {"one process": ..., "gather with gradients": ...,
    "gather without gradients": ...}, each (loss, gradient as one vector of every parameter).

    model: x (B, 3, S, S) -> (h, z), in train mode (BatchNorm uses the batch). v1, v2: (M, 3, S, S), the two
    views of M images. "one process" is `losses.nt_xent` on the whole batch; the others start `world_size`
    processes on this machine (gloo, CPU), give each M / world_size images, and train the model under DDP
    with `sync_batchnorm`: their loss is the mean over ranks, their gradient DDP's average.
    """
    if len(v1) % world_size or v1.shape != v2.shape:
        raise ValueError(f"v1 and v2 must have the same shape, with a number of images divisible by world_size="
                         f"{world_size}; got {tuple(v1.shape)} and {tuple(v2.shape)}.")
    reference = copy.deepcopy(model)
    loss = nt_xent(reference(torch.cat([v1, v2]))[1], temperature, impl="torch")
    loss.backward()
    results = {"one process": (loss.item(), _gradient(reference))}
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    with tempfile.TemporaryDirectory() as folder:
        ranks = mp.spawn(_compare_rank, args=(world_size, f"file://{folder}/rendezvous", model, v1, v2, temperature,
                                              queue), nprocs=world_size, join=False)
        done = False
        while not done:            # read while they run: a rank blocks on a full pipe until its result is read
            _receive(queue, results)
            done = ranks.join(timeout=0.1)   # raises, with the rank's traceback, if a rank failed
    _receive(queue, results)
    return results


def _receive(queue, results: dict) -> None:
    while not queue.empty():
        name, (loss, grad) = queue.get()
        results[name] = (loss, torch.from_numpy(grad))


def _gradient(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _compare_rank(rank: int, size: int, init: str, model: nn.Module, v1: torch.Tensor, v2: torch.Tensor,
                  temperature: float, queue) -> None:
    """One rank of `compare_gathers`: its shard of the batch, both gathers, results sent by rank 0."""
    torch.set_num_threads(1)                     # the ranks share this machine's cores
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        replica = nn.parallel.DistributedDataParallel(sync_batchnorm(copy.deepcopy(model)))
        b = len(v1) // size
        mine = slice(rank * b, (rank + 1) * b)
        for name, carry in (("gather with gradients", True), ("gather without gradients", False)):
            replica.zero_grad(set_to_none=True)
            z1, z2 = replica(torch.cat([v1[mine], v2[mine]]))[1].chunk(2)
            loss = nt_xent_across_ranks(z1, z2, temperature, carry_grad=carry)
            loss.backward()                      # DDP averages the gradients over the ranks here
            total = loss.detach().clone()
            dist.all_reduce(total)
            if rank == 0:
                # as numbers: a tensor in a queue is shared memory, gone when this process exits
                queue.put((name, ((total / size).item(), _gradient(replica.module).numpy())))
    finally:
        dist.destroy_process_group()


__all__ = ["nt_xent_across_ranks", "compare_gathers"]
