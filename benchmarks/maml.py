"""MAML throughput (per-task loop vs vmap, side by side) and time to accuracy on Omniglot 5-way 1-shot.

    python benchmarks/maml.py                 # throughput (1 and 5 inner steps) + time to accuracy
    python benchmarks/maml.py --quick         # tiny sizes, seconds: checks that everything runs
    python benchmarks/maml.py --skip-accuracy # throughput only
    python benchmarks/maml.py --skip-throughput --tier full --budget 180   # time to accuracy only

Throughput: tasks per second of one second-order MAML outer step (meta-gradient + Adam update),
5-way 1-shot, 15 queries per class, Conv-4 with 64 channels on 28x28 images (stride-2 convolutions, the
MAML paper's Omniglot network that notebook 06 trains; `--downsample pool` for max-pooling), meta-batch 32,
for 1 and 5 inner steps; the per-task loop (torch.autograd.grad, the reference) and vmap (torch.func.grad) run on
the same tasks in the same process, and their losses are checked to agree.
Time to accuracy: second-order MAML trained on Omniglot 5-way 1-shot with the tier's preset until a
time budget runs out, evaluated on test tasks every `--eval-every` steps (evaluation time not counted).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import record, timed, write_results  # noqa: E402
from course_lib import runtime  # noqa: E402
from course_lib.meta import MetaConfig, evaluate, meta_loss, meta_step, meta_train  # noqa: E402
from course_lib.meta.omniglot import OMNIGLOT_PRESETS, episode_sampler  # noqa: E402
from course_lib.meta.models import DOWNSAMPLING, Conv4  # noqa: E402

NAME = "maml"


def synthetic_tasks(meta_batch: int, n_way: int, k_shot: int, n_query: int, side: int, device, gen) -> tuple:
    """Random images with Omniglot's shapes: throughput does not depend on the pixel values."""
    from course_lib.data import Episodes

    x = torch.rand(meta_batch, n_way * (k_shot + n_query), 1, side, side, generator=gen).to(device)
    y = torch.arange(n_way).repeat_interleave(k_shot + n_query)
    support = (y.view(n_way, -1)[:, :k_shot]).flatten()
    query = (y.view(n_way, -1)[:, k_shot:]).flatten()
    xs, xq = x[:, : n_way * k_shot], x[:, n_way * k_shot:]
    return Episodes(xs, support.repeat(meta_batch, 1).to(device), xq, query.repeat(meta_batch, 1).to(device))


def throughput(args, device) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    tasks = synthetic_tasks(args.meta_batch, 5, 1, args.n_query, 28, device, gen)
    shape = dict(n_way=5, k_shot=1, n_query=args.n_query, channels=args.channels, downsample=args.downsample,
                 meta_batch=args.meta_batch, threads=torch.get_num_threads(), note=args.note)
    records = []
    for steps in args.inner_steps:
        cfg = MetaConfig(method="maml", inner_lr=0.4, inner_steps=steps, meta_batch=args.meta_batch)
        losses, rate = {}, {}
        for impl in ("loop", "vmap"):
            torch.manual_seed(0)
            model = Conv4(5, args.channels, downsample=args.downsample).to(device)
            losses[impl] = meta_loss(model, tasks, inner_lr=0.4, inner_steps=steps, impl=impl)[0].item()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            seconds = timed(lambda: meta_step(model, optimizer, tasks, cfg, impl), device, repeats=args.repeats)
            rate[impl] = args.meta_batch / seconds
            variant = "per_task_loop" if impl == "loop" else "vmap"
            records.append(record(NAME, variant, f"tasks_per_s_inner{steps}", rate[impl], "tasks/s", device,
                                  inner_steps=steps, seconds_per_outer_step=seconds, **shape))
        if abs(losses["loop"] - losses["vmap"]) > 1e-4 * max(1.0, abs(losses["loop"])):
            raise AssertionError(f"loop and vmap disagree on the meta-loss: {losses}")
        records.append(record(NAME, "vmap_vs_per_task_loop", f"speedup_inner{steps}", rate["vmap"] / rate["loop"], "x",
                              device, inner_steps=steps, **shape))
    return records


def time_to_accuracy(args, device) -> list[dict]:
    from course_lib.data import load_omniglot

    cfg = OMNIGLOT_PRESETS[args.tier or runtime.tier()]
    mcfg = replace(cfg.maml, steps=10**9, budget_s=args.budget)
    train, test = load_omniglot("train").to(device), load_omniglot("test").to(device)
    sample = episode_sampler(train, 5, 1, cfg.n_query, rotate=cfg.rotate)
    test_sample = episode_sampler(test, 5, 1, 15)
    torch.manual_seed(cfg.seed)
    model = Conv4(5, cfg.channels, downsample=cfg.downsample).to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    curve = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "maml.pt"
        while True:
            history = meta_train(model, sample, mcfg, generator=gen, checkpoint=ckpt, stop_after=args.eval_every,
                                 progress=False)
            seconds, step = history.seconds, history.step
            score = evaluate(model, test_sample, mcfg, n_tasks=args.eval_tasks, generator=torch.Generator().manual_seed(1))
            curve.append({"step": step, "seconds": seconds, "accuracy": score.mean, "ci95": score.ci95})
            print(f"  {seconds:7.1f} s  step {step:>5}  5-way 1-shot test accuracy {score}")
            if history.done:
                break
    setting = dict(tier=args.tier or runtime.tier(), channels=cfg.channels, downsample=cfg.downsample,
                   meta_batch=mcfg.meta_batch, n_query=cfg.n_query, inner_steps=mcfg.inner_steps,
                   eval_inner_steps=mcfg.eval_inner_steps, lr_schedule=mcfg.lr_schedule, eval_tasks=args.eval_tasks,
                   budget_s=args.budget, threads=torch.get_num_threads(), note=args.note)
    last = curve[-1]
    hits = {t: next((c for c in curve if c["accuracy"] >= t), None) for t in args.targets}
    records = [record(NAME, "vmap", "omniglot_5w1s_accuracy_at_budget", last["accuracy"], "fraction", device,
                      ci95=last["ci95"], train_seconds=last["seconds"], steps=last["step"], curve=curve,
                      targets_not_reached=[t for t, hit in hits.items() if hit is None], **setting)]
    for target, hit in hits.items():
        if hit is not None:  # first evaluation at or above the target (resolution: --eval-every steps)
            records.append(record(NAME, "vmap", f"seconds_to_{100 * target:g}pct_5w1s", hit["seconds"], "s", device,
                                  step=hit["step"], **setting))
    return records


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): check that it runs")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--downsample", choices=DOWNSAMPLING, default="stride", help="Conv-4 of the throughput runs")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--n-query", type=int, default=15)
    parser.add_argument("--inner-steps", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-accuracy", action="store_true", help="throughput only")
    parser.add_argument("--skip-throughput", action="store_true", help="time to accuracy only")
    parser.add_argument("--tier", choices=runtime.TIERS, default=None, help="Omniglot preset (default: current tier)")
    parser.add_argument("--budget", type=float, default=None,
                        help="training seconds for time to accuracy (default 600; --quick: 3)")
    parser.add_argument("--eval-every", type=int, default=100, help="outer steps between evaluations")
    parser.add_argument("--eval-tasks", type=int, default=200)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.7, 0.9, 0.95, 0.987])
    parser.add_argument("--note", default="", help="free text kept in the records (e.g. machine load)")
    args = parser.parse_args(argv)
    if args.skip_accuracy and args.skip_throughput:
        parser.error("--skip-accuracy and --skip-throughput together leave nothing to measure")
    if args.quick:
        args.channels, args.meta_batch, args.n_query, args.inner_steps, args.repeats = 8, 4, 3, [1, 2], 1
        args.tier, args.eval_every, args.eval_tasks = "smoke", 2, 20
    if args.budget is None:
        args.budget = 3.0 if args.quick else 600.0
    device = runtime.device()
    records = [] if args.skip_throughput else throughput(args, device)
    if not args.skip_accuracy:
        records += time_to_accuracy(args, device)
    write_results(NAME, device, records, args.out)


if __name__ == "__main__":
    main()
