"""Train SimCLR from the command line, in one process or across several with torchrun (DDP).

    python -m course_lib.contrastive.train --preset smoke                                  # one process
    torchrun --standalone --nproc_per_node=2 -m course_lib.contrastive.train --preset smoke  # 2 ranks (gloo on a CPU)
    torchrun --standalone --nproc_per_node=8 -m course_lib.contrastive.train --preset paper  # 8 GPUs (nccl)

The preset (`course_lib.contrastive.simclr.PRESETS`: smoke, laptop, full, paper) is trained by `train_simclr`;
across ranks each takes batch_size / ranks images of every batch, gathers every rank's projections for its
negatives (with their gradients), normalises with BatchNorm over the whole batch, and DDP averages the
gradients (see `course_lib.distributed`). batch_size is the whole batch, so the recipe is the same on one GPU
or eight. Rank 0 prints, evaluates (kNN) and writes the checkpoint, from which every rank resumes.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

import torch

from course_lib import distributed
from course_lib.contrastive.simclr import EXPECTED, PRESETS, build_model, load_data, train_simclr
from course_lib.runtime import runs_dir


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="smoke", help="the recipe (default smoke)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs instead of the preset's")
    parser.add_argument("--budget-s", type=float, default=None, help="seconds of training at most (0: no limit)")
    parser.add_argument("--batch-size", type=int, default=None, help="the whole batch, split over the ranks")
    parser.add_argument("--train-per-class", type=int, default=None, help="training images per class")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="resumed if it exists (default: COURSE_RUNS_DIR/simclr-<preset>-<ranks>ranks.pt)")
    return parser.parse_args(argv)


def configure(args: argparse.Namespace):
    """The preset with the command line's changes; the monitor's live plot is for notebooks."""
    cfg = replace(PRESETS[args.preset], live_plot=False)
    if args.epochs is not None:
        cfg = replace(cfg, epochs=args.epochs)
    if args.budget_s is not None:
        cfg = replace(cfg, budget_s=args.budget_s or None)
    if args.batch_size is not None:
        cfg = replace(cfg, batch_size=args.batch_size)
    if args.train_per_class is not None:
        cfg = replace(cfg, train_per_class=args.train_per_class)
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    device = distributed.start()
    try:
        rank, size = distributed.world()
        if device.type == "cpu":   # ranks on one machine share its cores
            local = int(os.environ.get("LOCAL_WORLD_SIZE", size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
        cfg = configure(args)
        checkpoint = args.checkpoint or runs_dir() / f"simclr-{args.preset}-{size}ranks.pt"
        images, labels, test_images, test_labels = load_data(cfg)
        torch.manual_seed(cfg.seed)              # the same initial weights on every rank
        model = build_model(cfg).to(device)
        if rank == 0:
            print(f"SimCLR, preset {args.preset}, {size} rank(s) on {device.type}, batch {cfg.batch_size} "
                  f"({cfg.batch_size // size} per rank); checkpoint {checkpoint}")
        history = train_simclr(model, images, cfg, labels, test_images, test_labels, checkpoint=checkpoint)
        if rank == 0:
            knn = history.curve("knn")[1]
            print(f"{history.step} steps in {history.seconds:.0f} s; kNN top-1 "
                  f"{f'{knn[-1]:.1%}' if knn else '(not measured)'}; expected for this preset: {EXPECTED[args.preset]}")
    finally:
        distributed.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
