"""Mixed views per second: `mix_images` on the whole batch vs `mix_images_reference`, one image at a time.

    python benchmarks/mixing.py                  # CPU: writes benchmarks/results/mixing-cpu.json
    python benchmarks/mixing.py --device cuda    # both on the GPU
    python benchmarks/mixing.py --quick --out /tmp/bench
    python benchmarks/mixing.py --threads 1 --note '2-core CPU, load 0.3'

Both variants mix the same batch of 512 float32 views of 3x32x32 (SimCLR's CIFAR-10 views, values in
[0, 1]) with the same parameters, for mixup and for CutMix; the parameters are drawn once per round
with `draw_mix` and not timed (drawing is the same call for both). Baseline (`per_image_reference`):
a Python loop over the images, a weighted sum or a slice assignment each. Ours (`batched`): one
weighted sum, or one mask from coordinate comparisons and one `torch.where`, for the batch. Both run
on --device, in this one run, alternating for a few rounds (medians kept); the ratio is what to
compare across machines.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import record, timed, write_results  # noqa: E402
from course_lib.contrastive.mixing import draw_mix, mix_images, mix_images_reference  # noqa: E402

VARIANTS = {"per_image_reference": mix_images_reference, "batched": mix_images}


def images_per_s(fn, x: torch.Tensor, params, device: torch.device, repeats: int) -> float:
    """Images mixed per second: batch size / median seconds of one call."""
    return len(x) / timed(lambda: fn(x, params), device, repeats=repeats, warmup=2)


def measure(kind: str, x: torch.Tensor, device: torch.device, rounds: int, repeats: int) -> dict[str, float]:
    """Median images/s of each variant over `rounds`, the variants alternating within each round, so a
    burst of load from other processes does not land on one variant only."""
    gen = torch.Generator(device=device).manual_seed(0)
    seen: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        params = draw_mix(len(x), kind, 1.0, x.shape[2], x.shape[3], generator=gen)
        for name, fn in VARIANTS.items():
            seen[name].append(images_per_s(fn, x, params, device, repeats))
    return {name: sorted(v)[len(v) // 2] for name, v in seen.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for a smoke check")
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--device", default="cpu", help="where both variants run: cpu or cuda")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    p.add_argument("--note", default="", help="free text stored in every record, e.g. the machine's load")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    batch = 64 if a.quick else a.batch
    rounds, repeats = (1, 3) if a.quick else (5, 9)
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)  # SimCLR views
    extra = {"data": "random float32 views 3x32x32 in [0, 1]", "batch": batch, "alpha": 1.0, "rounds": rounds,
             "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
             "load_avg_1min_before": round(os.getloadavg()[0], 2), **({"note": a.note} if a.note else {})}
    records = []
    for kind in ("mixup", "cutmix"):
        speed = measure(kind, x, device, rounds, repeats)
        for name, value in speed.items():
            records.append(record("mixing", name, f"{kind}_images_per_second", value, "images/s", device,
                                  kind=kind, **extra))
        ratio = speed["batched"] / speed["per_image_reference"]
        records.append(record("mixing", "batched", f"{kind}_speedup_vs_per_image_reference", ratio, "x", device,
                              kind=kind, **extra))
    after = round(os.getloadavg()[0], 2)  # with the one before: was the machine busy during the run?
    records = [{**r, "load_avg_1min_after": after} for r in records]
    write_results("mixing" + ("-quick" if a.quick else ""), device, records, a.out)


if __name__ == "__main__":
    main()
