"""A real training process for tests/test_resume.py: the smoke preset of SimCLR or of Omniglot MAML on
synthetic images (unit tests never need the datasets), with a checkpoint after every step.

    python tests/training_child.py simclr|maml CHECKPOINT OUT [--hang-after-first-save]

Writes the final weights and history to OUT. With --hang-after-first-save the process prints "saved"
after its first checkpoint and then sleeps, so the test can SIGKILL it at a known point, mid-run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, replace

import torch

import course_lib.training as training
from course_lib.contrastive.simclr import PRESETS, build_model, train_simclr
from course_lib.meta import meta_train
from course_lib.meta.models import Conv4
from course_lib.meta.omniglot import OMNIGLOT_PRESETS, episode_sampler

STEPS = 6  # enough to stop in the middle; the rest of each preset is as the smoke tier has it


def hang_after_first_save() -> None:
    save = training.save_checkpoint

    def save_then_hang(*args, **kwargs):
        path = save(*args, **kwargs)
        print("saved", flush=True)
        time.sleep(600)  # the test kills the process here
        return path

    training.save_checkpoint = save_then_hang


def simclr(checkpoint: str):
    cfg = PRESETS["smoke"]  # budget_s=90: the plan is measured, stored in the checkpoint, and reused on resume
    cfg = replace(cfg, epochs=STEPS // 2)
    images = torch.randint(0, 256, (2 * cfg.batch_size, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))  # 2 steps per epoch
    labels = torch.arange(len(images)) % 10
    torch.manual_seed(0)
    model = build_model(cfg)
    history = train_simclr(model, images, cfg, labels, images[:100], labels[:100], checkpoint=checkpoint,
                           checkpoint_every_s=0.0, progress=False)
    return model, history


def maml(checkpoint: str):
    cfg = OMNIGLOT_PRESETS["smoke"]
    images = torch.rand(12, 20, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # 12 "characters"
    sample = episode_sampler(images, 5, cfg.train_shot, cfg.n_query, rotate=cfg.rotate)
    torch.manual_seed(0)
    model = Conv4(5, cfg.channels, downsample=cfg.downsample)
    history = meta_train(model, sample, replace(cfg.maml, steps=STEPS), generator=torch.Generator().manual_seed(1),
                         checkpoint=checkpoint, checkpoint_every_s=0.0, progress=False)
    return model, history


if __name__ == "__main__":
    which, checkpoint, out = sys.argv[1:4]
    torch.set_num_threads(1)  # the same reduction order in every process
    if "--hang-after-first-save" in sys.argv:
        hang_after_first_save()
    model, history = {"simclr": simclr, "maml": maml}[which](checkpoint)
    torch.save({"model": model.state_dict(), "history": asdict(history)}, out)
