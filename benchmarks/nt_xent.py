"""NT-Xent forward + backward: the naive loss (the (2N, 2N) matrix) vs the fused Triton kernel.

    python benchmarks/nt_xent.py                     # on a CUDA GPU: writes benchmarks/results/nt_xent-<card>.json
    python benchmarks/nt_xent.py --quick --out /tmp/bench   # tiny sizes; without a GPU, in Triton's interpreter

For 2N in {1,024, 4,096, 16,384, 65,536, 131,072}, D = 128, fp32 and bf16, both variants are run
side by side in this one process: `naive_torch` (course_lib.contrastive.losses.nt_xent_reference) and
`fused_triton` (course_lib.kernels.nt_xent.nt_xent_fused). For each it records the median time of
forward + backward (after a warm-up) and the extra peak memory: torch.cuda.max_memory_allocated
during one forward + backward, minus the bytes of the inputs z and of their gradient z.grad. An
out-of-memory error is recorded as such (metric `out_of_memory`), not as a time. Each fused record
also carries its loss's relative difference from the naive loss where both ran.

Without a GPU the script only prints that it needs one (exit 0). `--quick` runs tiny sizes to check
that the script works; on the CPU it uses Triton's interpreter and writes to a temporary folder
unless --out is given: interpreter times say nothing about GPU speed and are not results.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

SIZES = (1024, 4096, 16384, 65536, 131072)      # 2N, rows of z
QUICK_SIZES = (64, 130)
DIM = 128                                        # D, as in SimCLR's projection head
QUICK_DIM = 32
TEMPERATURE = 0.1                                # a large-batch SimCLR value
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds (interpreter on CPU)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="override the 2N values")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per point (median reported)")
    return parser.parse_args(argv)


def measure(fn, z: torch.Tensor, repeats: int) -> dict:
    """Median seconds of fn(z).backward() and, on CUDA, the extra peak bytes of one such call."""
    from benchmarks.common import timed

    def step():
        z.grad = None
        fn(z).backward()

    out = {"seconds": timed(step, z.device, repeats=repeats, warmup=1)}
    if z.device.type == "cuda":
        z.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()                       # z, and nothing else of ours
        loss = fn(z)
        loss.backward()
        torch.cuda.synchronize()
        out["extra_bytes"] = torch.cuda.max_memory_allocated() - base - z.grad.numel() * z.grad.element_size()
        out["loss"] = loss.item()
    else:
        out["loss"] = fn(z).item()
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.common import kernel_device, record, write_results

    device = kernel_device("benchmarks/nt_xent.py", args.quick)
    if device is None:
        return 0
    cuda = device.type == "cuda"
    from course_lib.kernels.nt_xent import nt_xent_fused   # after kernel_device: it may choose Triton's interpreter
    from course_lib.contrastive.losses import nt_xent_reference
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    dim = QUICK_DIM if args.quick else DIM
    variants = {"naive_torch": nt_xent_reference, "fused_triton": nt_xent_fused}
    extra = dict(dim=dim, temperature=TEMPERATURE, interpreter=not cuda)
    records = []
    for dtype_name, dtype in DTYPES.items():
        for rows in sizes:
            gen = torch.Generator().manual_seed(rows)
            z = torch.randn(rows, dim, generator=gen).to(device=device, dtype=dtype).requires_grad_(True)
            results = {}
            for variant, loss_fn in variants.items():
                point = dict(extra, rows=rows, dtype=dtype_name)
                try:
                    results[variant] = measure(lambda x: loss_fn(x, TEMPERATURE), z, args.repeats)
                except torch.cuda.OutOfMemoryError:
                    records.append(record("nt_xent", variant, "out_of_memory", 1.0, "flag", device, **point))
                    print(f"{variant:>13} {dtype_name} 2N={rows:>7}: out of memory")
                    continue
                finally:
                    z.grad = None
                    if cuda:
                        torch.cuda.empty_cache()
                res = results[variant]
                records.append(record("nt_xent", variant, "fwd_bwd_time", res["seconds"] * 1e3, "ms", device, **point))
                if "extra_bytes" in res:
                    records.append(record("nt_xent", variant, "peak_memory_beyond_inputs_and_grad",
                                          res["extra_bytes"] / 2**30, "GiB", device, **point))
            print(f"{dtype_name} 2N={rows:>7}: " + " | ".join(
                f"{v} {r['seconds'] * 1e3:.3g} ms" + (f", {r['extra_bytes'] / 2**30:.3g} GiB" if "extra_bytes" in r else "")
                for v, r in results.items()), flush=True)
            if len(results) == 2:
                naive, fused = results["naive_torch"], results["fused_triton"]
                point = dict(extra, rows=rows, dtype=dtype_name)
                records.append(record("nt_xent", "fused_triton", "time_ratio_vs_naive",
                                      fused["seconds"] / naive["seconds"], "x", device, **point))
                records.append(record("nt_xent", "fused_triton", "loss_rel_diff_vs_naive",
                                      abs(fused["loss"] - naive["loss"]) / abs(naive["loss"]), "1", device, **point))
            del z
    out = args.out
    if out is None and not cuda:
        out = Path(tempfile.mkdtemp(prefix="nt_xent_quick_"))  # interpreter times are not results
    write_results("nt_xent", device, records, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
