"""Few-shot Omniglot without labels: test accuracy against training time, every method of notebook 07 in one run.

    python benchmarks/few_shot_label_free.py                    # the tier's budgets, x 1/4, 1/2 and 1
    python benchmarks/few_shot_label_free.py --fractions 1      # the tier's budgets only
    python benchmarks/few_shot_label_free.py --quick            # seconds: checks that everything runs

For each fraction f of the tier's budgets (`course_lib.meta.label_free.LABEL_FREE_PRESETS`), every method is
trained afresh for f x its budget and scored on the same 5-way 1- and 5-shot test tasks of the 423 unseen
characters: SimCLR (frozen prototypes, then fine-tuned on each support set), UMTRA-ProtoNet, and with labels
ProtoNet, MAML from the SimCLR encoder and MAML from scratch (at equal total time). One record per method,
fraction and shot count: the accuracy, its 95% interval, the training seconds and steps.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import record, write_results  # noqa: E402
from course_lib import runtime  # noqa: E402
from course_lib.meta.label_free import (LABEL_FREE_PRESETS, LabelFreeConfig, score_on_test,  # noqa: E402
                                        train_simclr_encoder, train_umtra, train_with_labels)

NAME = "few_shot_label_free"


def scaled(cfg: LabelFreeConfig, fraction: float) -> LabelFreeConfig:
    """cfg with every training budget multiplied by `fraction`."""
    def times(meta):
        return replace(meta, budget_s=meta.budget_s * fraction)
    return replace(cfg, simclr=times(cfg.simclr), umtra=times(cfg.umtra), maml=times(cfg.maml),
                   protonet=times(cfg.protonet))


def run_methods(cfg: LabelFreeConfig, train: torch.Tensor, test: torch.Tensor):
    """Yield (method, labels used, training seconds, steps, {k_shot: Score}) for every method of notebook 07."""
    def scores(model, how):
        return {k: score_on_test(model, how, cfg, test, 5, k) for k in cfg.shots}

    encoder, history = train_simclr_encoder(cfg, train, progress=False)
    yield "simclr_frozen", False, history.seconds, history.step, scores(encoder, "prototypes")
    yield "simclr_finetuned", False, history.seconds, history.step, scores(encoder, "finetune")
    simclr_seconds = history.seconds
    model, history = train_umtra(cfg, train, progress=False)
    yield "umtra_protonet", False, history.seconds, history.step, scores(model, "umtra")
    model, history = train_with_labels(cfg, train, "protonet", progress=False)
    yield "protonet", True, history.seconds, history.step, scores(model, "protonet")
    model, history = train_with_labels(cfg, train, "maml", init=encoder, progress=False)
    yield "maml_from_simclr", True, history.seconds + simclr_seconds, history.step, scores(model, "maml")
    model, history = train_with_labels(cfg, train, "maml", progress=False)
    yield "maml_scratch", True, history.seconds, history.step, scores(model, "maml")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=list(LABEL_FREE_PRESETS), default=None, help="budgets (default: COURSE_TIER)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--eval-tasks", type=int, default=None, help="test tasks per score (default: the tier's)")
    parser.add_argument("--quick", action="store_true", help="2-second budgets, 10 test tasks: check that it runs")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--note", default="", help="free text kept in each record (e.g. 'quiet machine')")
    args = parser.parse_args(argv)
    from course_lib.data import load_omniglot

    tier = args.tier or runtime.tier()
    cfg = LABEL_FREE_PRESETS[tier]
    if args.quick:
        cfg = replace(scaled(cfg, 2.0 / cfg.simclr.budget_s), eval_tasks=10, shots=(1,))
        args.fractions = [1.0]
    if args.eval_tasks:
        cfg = replace(cfg, eval_tasks=args.eval_tasks)
    device = runtime.device()
    train, test = load_omniglot("train").to(device), load_omniglot("test").to(device)
    records = []
    for fraction in args.fractions:
        run_cfg = scaled(cfg, fraction)
        for method, labels, seconds, steps, scores in run_methods(run_cfg, train, test):
            for k_shot, score in scores.items():
                records.append(record(NAME, method, f"omniglot_5w{k_shot}s_accuracy", score.mean, "fraction", device,
                                      ci95=score.ci95, labels=labels, train_seconds=seconds, steps=steps,
                                      budget_fraction=fraction, tier=tier, eval_tasks=run_cfg.eval_tasks,
                                      channels=run_cfg.simclr.channels, downsample=run_cfg.simclr.downsample,
                                      threads=torch.get_num_threads(), note=args.note))
                print(f"  x{fraction:<4} {method:<17} {seconds:6.0f} s  5-way {k_shot}-shot {score}", flush=True)
    write_results(NAME, device, records, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
