"""Few-shot Omniglot with MAML and ProtoNet: per-tier presets, the episode sampler, published results.

    cfg = pick(OMNIGLOT_PRESETS)
    sample = episode_sampler(train_images, n_way=5, k_shot=1, n_query=cfg.n_query, rotate=True)
    tasks = sample(cfg.maml.meta_batch, generator)       # Episodes on the images' device

MAML is trained with one model per number of ways (its head has n_way outputs) on `train_shot`-shot
tasks and evaluated with every shot count in `eval_shots`; ProtoNet has no head, so one ProtoNet
serves every setting. The papers train one model per (ways, shots) setting, which is stronger for 5-shot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from course_lib.data import sample_episodes
from course_lib.meta.core import MetaConfig
from course_lib.training import config_identity

# Published test accuracies (%), Omniglot, keyed by (n_way, k_shot).
# MAML: Finn et al. 2017, Table 1. First-order MAML: Nichol, Achiam and Schulman 2018 ("On First-Order
# Meta-Learning Algorithms"), their Omniglot results with transduction. ProtoNet: Snell et al. 2017, Table 1.
PUBLISHED = {
    "maml": {(5, 1): 98.7, (5, 5): 99.9, (20, 1): 95.8, (20, 5): 98.9},
    "fomaml": {(5, 1): 98.3, (5, 5): 99.2, (20, 1): 89.4, (20, 5): 97.9},
    "protonet": {(5, 1): 98.8, (5, 5): 99.7, (20, 1): 96.0, (20, 5): 98.9},
}


@dataclass(frozen=True)
class OmniglotConfig:
    """One tier's Omniglot experiment."""

    ways: tuple[int, ...] = (5,)  # a MAML model is trained per number of ways
    train_shot: int = 1  # support examples per class while meta-training
    eval_shots: tuple[int, ...] = (1, 5)  # support examples per class at test time
    n_query: int = 15  # query examples per class (training and test)
    channels: int = 64  # Conv-4 filters per block
    # MAML's Conv-4 halves the image with stride-2 convolutions, as in the MAML paper's Omniglot network
    # (a quarter of the convolution work of max-pooling: about 4x the outer steps per second on a CPU);
    # ProtoNet's max-pools, as in its paper. See `course_lib.meta.models.Conv4`.
    downsample: str = "stride"
    rotate: bool = True  # rotations by 90 degrees make new classes (1200 -> 4800), as in MAML
    maml: MetaConfig = field(default_factory=MetaConfig)
    protonet: MetaConfig = field(default_factory=lambda: MetaConfig(method="protonet"))
    protonet_way: int = 5  # ways of ProtoNet's training episodes (its paper uses more than at test time)
    eval_tasks: int = 600  # test tasks per setting (>= 600 for the published protocol)
    # bands that notebook 06 asserts on 5-way 1-shot test accuracy (measured results minus a margin)
    min_accuracy: dict = field(default_factory=lambda: {"maml": 0.95, "protonet": 0.95})
    seed: int = 0


OMNIGLOT_PRESETS = {
    # CPU, about 3 minutes for the notebook: a narrower net, fewer queries per step, a higher meta_lr.
    "smoke": OmniglotConfig(
        channels=32, n_query=5, eval_tasks=100, min_accuracy={"maml": 0.70, "protonet": 0.75},
        maml=MetaConfig(method="maml", inner_lr=0.4, inner_steps=1, eval_inner_steps=3, meta_lr=3e-3,
                        meta_batch=16, steps=500, lr_schedule="cosine"),
        protonet=MetaConfig(method="protonet", meta_lr=3e-3, meta_batch=16, steps=80, lr_schedule="cosine")),
    # CPU, under 20 minutes: 14 minutes of MAML training (the cosine decay ends when they are spent, so
    # a slower machine takes fewer steps but still ends on a low learning rate), 600 test tasks.
    "laptop": OmniglotConfig(
        channels=32, n_query=5, eval_tasks=600, min_accuracy={"maml": 0.93, "protonet": 0.88},
        maml=MetaConfig(method="maml", inner_lr=0.4, inner_steps=1, eval_inner_steps=3, meta_lr=3e-3,
                        meta_batch=16, steps=8000, budget_s=840.0, lr_schedule="cosine"),
        protonet=MetaConfig(method="protonet", meta_lr=3e-3, meta_batch=16, steps=300, lr_schedule="cosine")),
    # One GPU: the MAML paper's Omniglot recipe (strided Conv-4 x64, meta-batch 32, inner_lr 0.4, 1 step
    # in training) with a cosine decay over a 10-minute budget, 5-way and 20-way, 600 test tasks per setting.
    "full": OmniglotConfig(
        ways=(5, 20), channels=64, n_query=15, eval_tasks=600, protonet_way=20,
        maml=MetaConfig(method="maml", inner_lr=0.4, inner_steps=1, eval_inner_steps=3, meta_lr=1e-3,
                        meta_batch=32, steps=6000, budget_s=600.0, lr_schedule="cosine"),
        protonet=MetaConfig(method="protonet", meta_lr=1e-3, meta_batch=32, steps=3000, lr_schedule="cosine")),
}


def run_identity(cfg: OmniglotConfig) -> dict[str, str]:
    """What, besides its MetaConfig, defines a training run of `cfg`: the episodes (shots, queries, rotations)
    and the network (width, downsampling). Pass it as meta_train's `setup`, so a resume refuses a change."""
    return config_identity(cfg, ignore=("eval_shots", "eval_tasks", "min_accuracy", "maml", "protonet"))


def episode_sampler(images: torch.Tensor, n_way: int, k_shot: int, n_query: int, rotate: bool = False):
    """A function (meta_batch, generator) -> Episodes drawn from `images` (C, 20, 1, 28, 28)."""

    def sample(meta_batch: int, generator: torch.Generator):
        return sample_episodes(images, n_way, k_shot, n_query, meta_batch, generator=generator, rotate=rotate)

    return sample


__all__ = ["PUBLISHED", "OmniglotConfig", "OMNIGLOT_PRESETS", "run_identity", "episode_sampler"]
