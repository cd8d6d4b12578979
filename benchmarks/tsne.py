"""t-SNE: time and quality of sklearn's Barnes-Hut (the reference) vs the exact torch t-SNE, and `auto`.

    python benchmarks/tsne.py                       # N in {2000, 5000, 10000}, on the best device
    python benchmarks/tsne.py --quick               # N = 300: seconds, to see that it runs
    python benchmarks/tsne.py --sizes 300 500 1000 2000 --threads 1

Data: 128-D features with class structure, a seeded synthetic mixture of Gaussians (`features` below):
10 classes, each a mixture of 4 sub-clusters, wide enough that neighbourhoods overlap (a kNN classifier
in 128-D is right for about 90% of 2000 points, not 100%). It stands in for encoder features without needing a
trained encoder or the dataset. Quality: sklearn.manifold.trustworthiness (k=10) and the leave-one-out
accuracy of a 10-NN classifier in the 2-D map. `auto` records the time and quality of the implementation
it chose for that size (measured in this same run), so "auto is never slower than sklearn" can be read off.

On a CPU the exact torch path costs O(N^2) per step; above `--torch-full-max` points it is not run to the
end (minutes per run): the benchmark then measures its affinity computation and its time per step over
`--partial-iters` steps, and records those, not a total.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import record, write_results  # noqa: E402
from course_lib import tsne as T  # noqa: E402
from course_lib.similarity import map_knn_accuracy, trustworthiness  # noqa: E402

DATA = ("synthetic mixture of Gaussians: 10 classes x 4 sub-clusters in 128-D, centres N(0, 0.3^2 I), "
        "sub-cluster offsets N(0, 0.3^2 I), points N(0, I) around them, seed 0")


def features(n: int, dim: int = 128, classes: int = 10, subclusters: int = 4, seed: int = 0):
    """(n, dim) float32 features and (n,) int64 labels: see DATA."""
    gen = torch.Generator().manual_seed(seed)
    centres = 0.3 * torch.randn(classes, dim, generator=gen)
    offsets = 0.3 * torch.randn(classes, subclusters, dim, generator=gen)
    labels = torch.arange(n) % classes
    sub = torch.randint(subclusters, (n,), generator=gen)
    x = centres[labels] + offsets[labels, sub] + torch.randn(n, dim, generator=gen)
    return x, labels


def run_one(impl: str, x: torch.Tensor, labels: torch.Tensor) -> dict:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    y = T.tsne(x, impl=impl, cache=False)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "trustworthiness": trustworthiness(x, y, k=10),
            "knn_accuracy": map_knn_accuracy(y, labels, k=10)}


def run_partial(x: torch.Tensor, iters: int) -> dict:
    """Time of the affinities and mean time per gradient step of the exact torch t-SNE (no full run)."""
    sync = (lambda: torch.cuda.synchronize(x.device)) if x.device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    P = T.joint_probabilities(x, 30.0)
    sync()
    p_seconds = time.perf_counter() - start
    y = T.pca_init(x)
    start = time.perf_counter()
    for _ in range(iters):
        grad, _ = T.kl_gradient(y, P)
        y = y - grad  # any update will do: only the cost of a step is measured
    sync()
    return {"affinity_seconds": p_seconds, "seconds_per_step": (time.perf_counter() - start) / iters}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 300 only (seconds)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the best available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and sklearn")
    parser.add_argument("--torch-full-max", type=int, default=None,
                        help="largest N for a full torch run (default: all on a GPU, 5000 on a CPU)")
    parser.add_argument("--partial-iters", type=int, default=20)
    parser.add_argument("--note", default="", help="stored with every record, e.g. how loaded the machine was")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    device = torch.device(args.device) if args.device else (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    sizes = [300] if args.quick else args.sizes
    full_max = args.torch_full_max or (max(sizes) if device.type == "cuda" else 5000)
    if args.threads:
        torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    extra = {"data": DATA, "dim": 128, "perplexity": 30, "threads": threads,
             "load_average_at_start": round(os.getloadavg()[0], 2), "note": args.note}
    records = []
    with threadpool_limits(limits=threads):  # sklearn's OpenMP / BLAS get the same threads as torch
        warm_x, _ = features(100)
        for impl in ("sklearn", "torch"):  # imports and first-call set-up are not part of any timing
            T.tsne(warm_x.to(device), perplexity=10, impl=impl, max_iter=250, cache=False)
        for n in sizes:
            x, labels = features(n)
            x = x.to(device)
            measured = {"sklearn": run_one("sklearn", x, labels)}
            if n <= full_max:
                measured["torch"] = run_one("torch", x, labels)
            else:
                part = run_partial(x, args.partial_iters)
                for metric, value in part.items():
                    records.append(record("tsne", "torch", metric, value, "s", device, n_points=n,
                                          partial_iters=args.partial_iters, **extra))
            chosen = T.choose_impl(n, x.device)
            if chosen in measured:
                measured["auto"] = {**measured[chosen]}
            for variant, values in measured.items():
                for metric, value in values.items():
                    unit = "s" if metric == "seconds" else "fraction"
                    more = {"runs": chosen} if variant == "auto" else {}
                    records.append(record("tsne", variant, metric, value, unit, device, n_points=n, **more, **extra))
            print(f"N={n}: " + ", ".join(f"{v} {m['seconds']:.1f}s trust {m['trustworthiness']:.4f} "
                                           f"knn {m['knn_accuracy']:.3f}" for v, m in measured.items()), flush=True)
    write_results("tsne", device, records, args.out)


if __name__ == "__main__":
    main()
