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
  (`course_lib.contrastive.across_ranks`, where SimCLR's loss across ranks is; notebook 03 shows both).
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

import os

import torch
import torch.distributed as dist
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


__all__ = ["world", "is_main", "start", "stop", "any_rank", "min_over_ranks", "sum_over_ranks", "gather", "average_gradients",
           "CrossRankBatchNorm", "sync_batchnorm"]
