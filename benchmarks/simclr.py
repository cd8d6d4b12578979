"""SimCLR end to end: images/s of the standard pipeline vs ours, side by side, and kNN against wall-clock.

    python benchmarks/simclr.py            # ResNet-18 at 32 px on CUDA; the small CNN at 16 px on a CPU
    python benchmarks/simclr.py --quick    # tiny sizes, seconds
    python benchmarks/simclr.py --skip-accuracy     # throughput only (--skip-throughput: time to accuracy only)

Throughput (images/s; each image gives two views, forward + backward + optimizer step):
- `torchvision_dataloader`, the standard pipeline: a Dataset that applies the torchvision v2 SimCLR transform
  image by image, twice, in a DataLoader with one worker per CPU core; fp32, default memory layout, eager.
- `ours`: `course_lib.contrastive.simclr.train_simclr`, the course's loop: uint8 data resident on the device, both views
  drawn batched by `simclr_views`; on CUDA also bf16 autocast, channels_last and torch.compile.
Both train the same model on the same images; the ratio is measured in one run on one machine. Warmup (worker
start-up, compilation) is excluded: both are timed from their second epoch on.

Time to accuracy: `train_simclr` under a time budget with the kNN monitor (k=200, t=0.1; every epoch on a CPU,
every 10 on a GPU; a class-balanced test subset on a CPU); records (seconds, top-1) pairs. The data used is
recorded: the offline copy of CIFAR-10 on these machines is a JPEG quality-75 re-encoding, not the official pixels.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import record, write_results  # noqa: E402
from course_lib.contrastive.views import ViewConfig, reference_transform  # noqa: E402
from course_lib.data import DataIntegrityWarning, class_subset, load_cifar10  # noqa: E402
from course_lib.contrastive.losses import nt_xent  # noqa: E402
from course_lib.runtime import data_dir  # noqa: E402
from course_lib.contrastive.simclr import (PRESETS, SimCLRConfig, build_learner, build_model, make_optimizer,  # noqa: E402
                                           make_step, train_simclr)

NAME = "simclr"


class TwoViews(torch.utils.data.Dataset):
    """The standard per-image pipeline: each item is two torchvision views of one uint8 image."""

    def __init__(self, images: torch.Tensor, views: ViewConfig):
        self.images, self.transform = images, reference_transform(views)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = self.images[i]
        return self.transform(img), self.transform(img)


def standard_throughput(images: torch.Tensor, cfg: SimCLRConfig, device: torch.device, epochs: int) -> float:
    """Images/s of the DataLoader pipeline, fp32 eager, timed over epochs 2..epochs."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = torch.utils.data.DataLoader(
        TwoViews(images, cfg.views), batch_size=cfg.batch_size, shuffle=True, drop_last=True,
        num_workers=os.cpu_count() or 1, persistent_workers=True, pin_memory=device.type == "cuda")
    seen, start = 0, None
    for epoch in range(epochs):
        if epoch == 1:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, seen = time.perf_counter(), 0
        for v1, v2 in loader:
            views = torch.cat([v1, v2]).to(device, non_blocking=device.type == "cuda")
            _, z = model(views)
            loss = nt_xent(z, cfg.temperature, impl="torch")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()  # a per-step sync, as the usual training loop's logging has (the course loop avoids it)
            seen += len(v1)
    return seen / (time.perf_counter() - start)


def ours_throughput(images: torch.Tensor, cfg: SimCLRConfig, device: torch.device, epochs: int) -> float:
    """Images/s of the training step `train_simclr` runs (views, model, loss, optimizer), timed over epochs 2..epochs."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    per_epoch = len(images) // cfg.batch_size
    learner = build_learner(model, cfg)
    step = make_step(learner, make_optimizer(learner, cfg), images.to(device), cfg,
                     torch.Generator(device=device).manual_seed(cfg.seed))
    for s in range(per_epoch):  # the first epoch warms up (compilation, allocator, caches)
        step(s)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for s in range(per_epoch, epochs * per_epoch):
        step(s)
    sync()
    return (epochs - 1) * per_epoch * cfg.batch_size / (time.perf_counter() - start)


def tta_per_class(quick: bool, cuda: bool, batch_size: int) -> tuple[int | None, int | None]:
    """Train and test images per class of the time-to-accuracy run (None: the whole split). --quick keeps at
    least two batches of training images (10 classes), so that a GPU's batch of 256 fits as well as a CPU's 64."""
    if quick:
        return max(20, math.ceil(2 * batch_size / 10)), 10
    return (None, None) if cuda else (1000, 500)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for CI")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON (default benchmarks/results)")
    parser.add_argument("--images", type=int, default=None, help="training images for the throughput runs")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per throughput run (the first is warmup)")
    parser.add_argument("--budget-min", type=float, default=None, help="minutes of the time-to-accuracy run")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="time-to-accuracy checkpoint: a run killed (e.g. by a call's time limit) resumes from it, "
                             "with the step plan it measured at its start")
    parser.add_argument("--no-compile", action="store_true", help="CUDA: skip torch.compile in our pipeline")
    parser.add_argument("--skip-accuracy", action="store_true", help="throughput only")
    parser.add_argument("--skip-throughput", action="store_true", help="time to accuracy only")
    args = parser.parse_args(argv)
    if args.skip_accuracy and args.skip_throughput:
        parser.error("--skip-accuracy and --skip-throughput together leave nothing to measure")
    return args


def load_splits() -> tuple[tuple[torch.Tensor, ...], dict]:
    """CIFAR-10's train and test images and labels, and what the records say about the data."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataIntegrityWarning)
        train_images, train_labels = load_cifar10("train")
        test_images, test_labels = load_cifar10("test")
    official = not any(issubclass(w.category, DataIntegrityWarning) for w in caught)
    data = {"dataset": "CIFAR-10", "folder": str(data_dir() / "cifar-10-batches-py"),
            "pixels": "official release (MD5 verified)" if official else
            "local copy that differs from the official release (on these machines: JPEG quality-75 re-encoding)"}
    return (train_images, train_labels, test_images, test_labels), data


def throughput_records(images: torch.Tensor, cfg: SimCLRConfig, device: torch.device, epochs: int,
                       setup: dict) -> list[dict]:
    cuda = device.type == "cuda"
    standard = standard_throughput(images, cfg, device, epochs)
    ours = ours_throughput(images, cfg, device, epochs)
    return [
        record(NAME, "torchvision_dataloader", "throughput", standard, "images/s", device, precision="fp32", **setup),
        record(NAME, "ours", "throughput", ours, "images/s", device, precision="bf16" if cuda and cfg.amp else "fp32",
               channels_last=cfg.channels_last, compiled=cfg.compile, **setup),
        record(NAME, "ours", "speedup_vs_torchvision_dataloader", ours / standard, "x", device, **setup),
    ]


def accuracy_records(splits: tuple, cfg: SimCLRConfig, device: torch.device, args, budget: float,
                     setup: dict) -> list[dict]:
    """Time to accuracy: the tier's recipe with the kNN monitor, under a time budget (minutes)."""
    cuda = device.type == "cuda"
    train_images, train_labels, test_images, test_labels = splits
    per_class_train, per_class_test = tta_per_class(args.quick, cuda, cfg.batch_size)
    xtr, ytr = (train_images, train_labels) if per_class_train is None else class_subset(train_images, train_labels, per_class_train)
    xte, yte = (test_images, test_labels) if per_class_test is None else class_subset(test_images, test_labels, per_class_test, seed=1)
    # kNN every epoch on a CPU; on a GPU every 10 (a check over 60,000 images costs about one epoch)
    tta_cfg = replace(cfg, epochs=10**6, knn_every=10 if cuda else 1, budget_s=60 * budget)
    torch.manual_seed(cfg.seed)
    history = train_simclr(build_model(tta_cfg).to(device), xtr, tta_cfg, ytr, xte, yte, checkpoint=args.checkpoint,
                           progress=False)
    per_epoch = len(xtr) // tta_cfg.batch_size
    return [record(NAME, "ours", "knn_top1_vs_time", check["knn"], "fraction", device, seconds=check["seconds"],
                   epochs=check["step"] / per_epoch, budget_min=budget, train_images=len(xtr), test_images=len(xte),
                   segments_s=history.segments, **{k: v for k, v in setup.items() if k != "images"})
            for check in history.evals]


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    # A GPU runs the full tier's model (ResNet-18, 32 px); a CPU the laptop tier's small CNN at 16 px.
    cfg = PRESETS["full"] if cuda else PRESETS["laptop"]
    cfg = replace(cfg, compile=cuda and not args.no_compile, live_plot=False, budget_s=None)
    if args.quick:
        cfg = replace(cfg, batch_size=64 if not cuda else 256)
    n_images = args.images or (512 if args.quick else (50_000 if cuda else 2_048))
    epochs = args.epochs or (2 if args.quick else (3 if cuda else 2))
    budget = args.budget_min if args.budget_min is not None else (0.2 if args.quick else (15.0 if cuda else 3.0))

    splits, data = load_splits()
    images = splits[0][torch.randperm(len(splits[0]), generator=torch.Generator().manual_seed(0))[:n_images]]
    setup = {"arch": cfg.arch, "width": cfg.width, "size": cfg.views.size, "batch_size": cfg.batch_size,
             "images": n_images, "cpu_workers": os.cpu_count(), "torch_threads": torch.get_num_threads(),
             "data": data, "load_average": os.getloadavg()[0]}
    records = []
    if not args.skip_throughput:
        records += throughput_records(images, cfg, device, epochs, setup)
        write_results(NAME, device, records, args.out)   # now, so that a run cut off later still leaves these
    if not args.skip_accuracy:
        records += accuracy_records(splits, cfg, device, args, budget, setup)
        write_results(NAME, device, records, args.out)


if __name__ == "__main__":
    main()
