"""Training across processes with torch.distributed: one process per GPU (or several on a CPU, with gloo).

    torchrun --nproc_per_node=2 -m course_lib.contrastive.train --preset smoke   # see that module

Each process (a *rank*) holds a replica of the model and a shard of every batch; DDP averages the
gradients after each backward. What a contrastive loss adds is that its negatives are the *other*
images of the batch, most of which live on other ranks, so each rank gathers every rank's projections:

- **The gather must carry gradients.** `gather(x)` returns the (world * B, ...) concatenation of every
  rank's x, and its backward sends each rank the gradient that *every* rank's loss put on its rows
  (an all-reduce of the gradient, then this rank's slice). A plain `all_gather` returns tensors without
  a history: a rank's rows then get gradient only from its own anchors, while their role as negatives of
  the other ranks' anchors contributes nothing. The loss is the same, the gradient is not, and training
  goes on without any error: the classic bug. `gather(x, carry_grad=False)` is that bug, kept to show it
  (notebook 03; tests/test_distributed.py checks that the first equals one process on the whole batch
  and that the second does not).
- **BatchNorm over the whole batch.** SimCLR normalises with the statistics of all views of the batch
  (Chen et al., 2020, "global BN"); per-rank statistics would let a rank's positives recognise each
  other through them. `sync_batchnorm` swaps every BatchNorm for torch's `SyncBatchNorm` on CUDA, and
  for `CrossRankBatchNorm` (the same arithmetic, with differentiable all-reduces) on a CPU, where
  torch's runs on GPUs only.

MAML and ProtoNet need neither: their BatchNorm statistics are per task, so `meta_train` gives each rank
meta_batch / ranks tasks and `average_gradients` averages the meta-gradient before each outer step.

Outside a process group every function here acts as on a single process (rank 0 of 1).
"""

from __future__ import annotations

import copy
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process is rank 0, the one that prints, evaluates and writes checkpoints."""
    return world()[0] == 0


def start(backend: str | None = None) -> torch.device:
    """Join the process group that torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, ... in the environment).

    Returns this rank's device: the GPU numbered LOCAL_RANK with nccl where CUDA is available, else the CPU
    with gloo. Without torchrun's environment (a plain `python -m ...`) it starts nothing: one process.
    """
    cuda = torch.cuda.is_available()
    if "WORLD_SIZE" not in os.environ:
        return torch.device("cuda" if cuda else "cpu")
    local = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local} has no GPU: torch sees {torch.cuda.device_count()}. Start at "
                               "most that many processes per node (torchrun --nproc_per_node).")
        torch.cuda.set_device(local)
    dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    return torch.device("cuda", local) if cuda else torch.device("cpu")


def stop() -> None:
    """Leave the process group (after a barrier, so no rank exits while another still needs it)."""
    if world()[1] > 1:
        dist.barrier()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool) -> bool:
    """Whether `flag` is true on any rank (every rank must call this together)."""
    if world()[1] == 1:
        return flag
    value = torch.tensor([int(flag)], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def min_over_ranks(n: int) -> int:
    """The smallest `n` of all ranks, e.g. so that every rank plans the same number of steps."""
    if world()[1] == 1:
        return n
    value = torch.tensor([n], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return int(value.item())


def _collective_device() -> torch.device:
    """Where the process group's tensors must be: the current GPU for nccl, the CPU for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward: the sum over ranks of the gradient on this rank's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, size = world()
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)   # all_reduce works in place: not on autograd's
        dist.all_reduce(grad)                 # every rank's loss has a part in this rank's rows
        return grad.chunk(world()[1])[ctx.rank]


class _SumWithGrad(torch.autograd.Function):
    """all_reduce (sum) forward; backward the same: every rank's loss depends on the sum."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        total = x.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The sum of every rank's x, on every rank, differentiable; x itself on a single process."""
    return _SumWithGrad.apply(x) if world()[1] > 1 else x


def gather(x: torch.Tensor, carry_grad: bool = True) -> torch.Tensor:
    """(world * B, ...): every rank's x (B, ...), in rank order; x itself on a single process.

    carry_grad=False is the classic bug (see the module doc): the other ranks' rows arrive without a
    history, this rank's own rows are x, so only this rank's loss sends gradient back to them.
    """
    rank, size = world()
    if size == 1:
        return x
    if carry_grad:
        return _GatherWithGrad.apply(x)
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts)


def average_gradients(module: nn.Module) -> None:
    """Replace every gradient of `module` by its mean over the ranks, in one all-reduce; nothing on one process.

    What DDP does after backward, for trainers whose forward is a functional call that a DDP wrapper would not
    see (MAML's adapted parameters). Every rank must hold gradients for the same parameters.
    """
    size = world()[1]
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if size == 1 or not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= size
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))


def nt_xent_across_ranks(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
                         carry_grad: bool = True) -> torch.Tensor:
    """NT-Xent of this rank's 2B anchors against the views of every rank. Returns a scalar.

    z1, z2: (B, D), the projections of this rank's first and second views (row i of each from image i).
    The whole batch is z = [z1 of every rank; z2 of every rank] (2M, D), M = world * B, arranged as
    `losses.nt_xent` expects (the positive of row i is row i + M); this rank scores its own rows of it.
    The mean of the ranks' losses, which is what DDP's averaged gradients descend, is `nt_xent(z)`.
    """
    from course_lib.contrastive.losses import validate_temperature  # here: training imports this module

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


class CrossRankBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the whole batch across ranks, on any device.

    The reference arithmetic of torch's CUDA-only `SyncBatchNorm`: per-channel sums and then squared
    deviations are all-reduced (with gradient, so the backward is that of BatchNorm over the whole
    batch), two passes for accuracy. Running statistics get the unbiased variance, as in nn.BatchNorm.
    Input: (B, C) or (B, C, H, W); every rank must pass the same number of rows.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"CrossRankBatchNorm expects (B, C) or (B, C, H, W) input, got {tuple(x.shape)}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        size = world()[1]
        if not self.training or size == 1:
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        count = size * x.numel() // x.shape[1]                           # values per channel, all ranks
        mean = sum_over_ranks(x.sum(dims)) / count                 # (C,)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        centred = x - mean.view(shape)
        var = sum_over_ranks((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * count / max(count - 1, 1), factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        return out * self.weight.view(shape) + self.bias.view(shape) if self.affine else out


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm1d/2d normalising over the whole batch across ranks (in place where it can).

    torch's SyncBatchNorm for a module on CUDA, `CrossRankBatchNorm` elsewhere; weights and running
    statistics are kept. Outside a process group both act as plain BatchNorm.
    """
    if any(p.is_cuda for p in module.parameters()):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        like = next(iter(module.state_dict().values()), None)      # weight or running mean: device and dtype
        kind = {"device": like.device, "dtype": like.dtype} if like is not None and like.is_floating_point() else {}
        swapped = CrossRankBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                     module.track_running_stats, **kind)
        swapped.load_state_dict(module.state_dict())
        return swapped.train(module.training)
    for name, child in module.named_children():
        setattr(module, name, sync_batchnorm(child))
    return module


def compare_gathers(model: nn.Module, v1: torch.Tensor, v2: torch.Tensor, temperature: float = 0.2,
                    world_size: int = 2) -> dict[str, tuple[float, torch.Tensor]]:
    """One SimCLR step's loss and gradient three ways: {"one process": ..., "gather with gradients": ...,
    "gather without gradients": ...}, each (loss, gradient as one vector of every parameter).

    model: x (B, 3, S, S) -> (h, z), in train mode (BatchNorm uses the batch). v1, v2: (M, 3, S, S), the two
    views of M images. "one process" is `losses.nt_xent` on the whole batch; the others start `world_size`
    processes on this machine (gloo, CPU), give each M / world_size images, and train the model under DDP
    with `sync_batchnorm`: their loss is the mean over ranks, their gradient DDP's average.
    """
    import tempfile

    import torch.multiprocessing as mp

    from course_lib.contrastive.losses import nt_xent

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


__all__ = ["world", "is_main", "start", "stop", "any_rank", "min_over_ranks", "sum_over_ranks", "gather", "average_gradients", "nt_xent_across_ranks",
           "CrossRankBatchNorm", "sync_batchnorm", "compare_gathers"]
