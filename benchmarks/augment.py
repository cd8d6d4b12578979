"""SimCLR views per second: torchvision v2 per image in a DataLoader vs `simclr_views` on a batch.

    python benchmarks/augment.py                 # CPU: writes benchmarks/results/augment-cpu.json
    python benchmarks/augment.py --device cuda   # batched on the GPU (baseline still CPU workers)
    python benchmarks/augment.py --quick --out /tmp/bench
    python benchmarks/augment.py --threads 1     # batched on one thread (see the committed result's note)

Baseline (`torchvision_dataloader`): the standard SimCLR input pipeline, a Dataset whose __getitem__
returns two views of one uint8 image through the torchvision transforms v2 reference, in a DataLoader
with one worker per CPU core, batch 512. Ours (`batched`): the uint8 images already sit on the
device and each step calls `simclr_views` twice on a batch of 512. Both produce the same
distribution of parameters (tests/test_augment.py); both are timed in this one run, on this machine,
after a warm-up, alternating for a few rounds (medians kept), and the ratio is what to compare
across machines.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import record, write_results  # noqa: E402
from course_lib.contrastive.views import ViewConfig, reference_transform, simclr_views  # noqa: E402


class PairDataset(torch.utils.data.Dataset):
    """Two reference views of image i: what a SimCLR DataLoader worker computes per item."""

    def __init__(self, images: torch.Tensor, config: ViewConfig):
        self.images, self.transform = images, reference_transform(config)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i]
        return self.transform(img), self.transform(img)


def _images(n: int) -> tuple[torch.Tensor, str]:
    try:
        import warnings

        from course_lib.data import load_cifar10
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the checksum note is irrelevant to speed
            x, _ = load_cifar10("train", download=False)
        return x[:n].contiguous(), "CIFAR-10 train"
    except FileNotFoundError:
        g = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), "random uint8 32x32"


def dataloader_views_per_s(images: torch.Tensor, batch: int, workers: int) -> float:
    loader = torch.utils.data.DataLoader(PairDataset(images, ViewConfig()), batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True)
    it = iter(loader)
    next(it)  # warm-up: worker start-up is not counted
    start, n = time.perf_counter(), 0
    for v1, _ in it:
        n += 2 * v1.shape[0]
    return n / (time.perf_counter() - start)


def batched_views_per_s(images: torch.Tensor, batch: int, device: torch.device, seconds: float) -> float:
    x = images.to(device)
    gen = torch.Generator(device=device).manual_seed(0)

    def step(i):
        b = x[(i * batch) % (len(x) - batch + 1):][:batch]
        return simclr_views(b, generator=gen), simclr_views(b, generator=gen)

    for i in range(3):
        step(i)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, n, i = time.perf_counter(), 0, 0
    while time.perf_counter() - start < seconds:
        step(i)
        n, i = n + 2 * batch, i + 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for a smoke check")
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--device", default="cpu", help="where the batched pipeline runs: cpu or cuda")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader workers (default: one per core)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for the batched pipeline (default: torch's, one per core)")
    p.add_argument("--note", default="", help="free text stored in every record, e.g. the machine's load")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    n_ref, rounds = (1024, 1) if a.quick else (5120, 3)
    images, data = _images(max(n_ref + a.batch, 4 * a.batch))
    extra = {"data": data, "batch": a.batch, "cpu_cores": os.cpu_count(),
             "load_avg_1min_before": round(os.getloadavg()[0], 2), **({"note": a.note} if a.note else {})}

    # Alternate the two pipelines for a few rounds and keep each one's median, so a burst of load
    # from other processes does not land on one pipeline only.
    refs, oursl = [], []
    for _ in range(rounds):
        refs.append(dataloader_views_per_s(images[: n_ref + a.batch], a.batch, a.workers))
        oursl.append(batched_views_per_s(images, a.batch, device, 1.0 if a.quick else 4.0))
    ref, ours = sorted(refs)[len(refs) // 2], sorted(oursl)[len(oursl) // 2]
    extra["rounds"] = rounds
    records = [
        record("augment", "torchvision_dataloader", "views_per_second", ref, "views/s", torch.device("cpu"),
               workers=a.workers, **extra),
        record("augment", "batched", "views_per_second", ours, "views/s", device, torch_threads=torch.get_num_threads(), **extra),
        record("augment", "batched", "speedup_vs_torchvision_dataloader", ours / ref, "x", device, **extra),
    ]
    write_results("augment" + ("-quick" if a.quick else ""), device, records, a.out)


if __name__ == "__main__":
    main()
