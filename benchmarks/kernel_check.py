"""The fused NT-Xent on this GPU: parity with the reference, tile shapes timed, and FUSED_MIN_ROWS chosen.

    python benchmarks/kernel_check.py parity --out DIR          # loss and gradient vs the reference, fp32 and bf16
    python benchmarks/kernel_check.py tiles --out DIR           # fwd + bwd time of TILES's entry and its neighbours
    python benchmarks/kernel_check.py parity --quick --out DIR  # tiny sizes; without a GPU, in Triton's interpreter

Part of benchmarks/gpu_check.py, which also calls `choose_fused_min_rows` on benchmarks/nt_xent.py's records.
Parity: `nt_xent_fused` against `nt_xent_reference` on the same inputs, the loss's relative difference and the
gradient's largest difference relative to the gradient's largest entry, held to the tolerances that
course_lib/kernels/nt_xent.py documents (bf16 against the fp32 reference of the same bf16 inputs); exits 1
when a point is outside them, after writing every record. Tiles: for this GPU's compute capability, the
`TILES` entry that `launch_config` picks and its neighbours (block_m and block_n halved and doubled), timed
at 2N = 16,384 and 65,536; `tile_choice` names the fastest. Nothing here changes the library: FUSED_MIN_ROWS
and TILES are set by a maintainer's commit, from these records.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import kernel_device, record, timed, write_results  # noqa: E402
from benchmarks.nt_xent import DIM, DTYPES, QUICK_DIM, TEMPERATURE  # noqa: E402

PARITY_ROWS = (1030, 8192, 32768)        # 2N; 1,030 is a multiple of no tile, so partial tiles are checked too
QUICK_PARITY_ROWS = (66, 130)
TILE_ROWS = (16384, 65536)
QUICK_TILE_ROWS = (66,)
# course_lib/kernels/nt_xent.py's docstring: fp32 within 1e-5 (loss relative, gradient relative to its largest
# entry); bf16 loss within 1 %, gradient within 2 %.
TOLERANCES = {"fp32": {"loss_rel_diff": 1e-5, "grad_max_diff_rel": 1e-5},
              "bf16": {"loss_rel_diff": 1e-2, "grad_max_diff_rel": 2e-2}}
BLOCKS = (16, 32, 64, 128, 256)          # tl.dot needs a power of 2, at least 16; above 256 nothing fits registers


def _inputs(rows: int, dim: int, dtype: str, device: torch.device) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(rows)).to(device=device, dtype=DTYPES[dtype])


def _loss_and_grad(fn, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.detach().clone().requires_grad_(True)
    loss = fn(z, TEMPERATURE)
    loss.backward()
    return loss.detach().double(), z.grad.double()


def parity_point(rows: int, dim: int, dtype: str, device: torch.device) -> dict[str, float]:
    """The two parity figures of one (2N, D, dtype); the truth is the fp32 reference of the same inputs."""
    from course_lib.contrastive.losses import nt_xent_reference
    from course_lib.kernels.nt_xent import nt_xent_fused

    z = _inputs(rows, dim, dtype, device)
    want, want_grad = _loss_and_grad(nt_xent_reference, z.float())
    got, got_grad = _loss_and_grad(nt_xent_fused, z)
    return {"loss_rel_diff": (abs(got - want) / abs(want)).item(),
            "grad_max_diff_rel": ((got_grad - want_grad).abs().max() / want_grad.abs().max()).item()}


def parity_records(sizes, dim: int, device: torch.device, interpreter: bool) -> list[dict]:
    records = []
    for dtype in DTYPES:
        for rows in sizes:
            for metric, value in parity_point(rows, dim, dtype, device).items():
                tolerance = TOLERANCES[dtype][metric]
                records.append(record("nt_xent_parity", "fused_triton", metric, value, "1", device, rows=rows, dim=dim,
                                      dtype=dtype, temperature=TEMPERATURE, tolerance=tolerance,
                                      within_tolerance=value <= tolerance, interpreter=interpreter))
                print(f"{dtype} 2N={rows:>6} {metric:<18} {value:.3g} (tolerance {tolerance:g})", flush=True)
    return records


def tile_candidates(base) -> list:
    """`base` (a LaunchConfig) and its neighbours, block_m and block_n halved and doubled, within BLOCKS."""
    shapes = [base] + [replace(base, **{field: size}) for field in ("block_m", "block_n")
                       for size in (getattr(base, field) // 2, getattr(base, field) * 2)]
    valid = [s for s in shapes if s.block_m in BLOCKS and s.block_n in BLOCKS and s.block_d in BLOCKS]
    return list(dict.fromkeys(valid))


def time_tiles(z: torch.Tensor, configs: list, repeats: int) -> list[float | None]:
    """Median ms of the fused loss's forward + backward with each config; None where it does not launch."""
    from triton.runtime.errors import OutOfResources

    from course_lib.kernels.nt_xent import nt_xent_fused

    times = []
    for config in configs:
        def step(config=config):
            z.grad = None
            nt_xent_fused(z, TEMPERATURE, config).backward()
        try:
            times.append(timed(step, z.device, repeats=repeats, warmup=1) * 1e3)
        except OutOfResources as exc:   # too much shared memory or too many registers for this GPU
            print(f"  {config} does not launch: {exc}")
            times.append(None)
    return times


def tile_choice(configs: list, times: dict[int, list], base) -> tuple[object, float] | None:
    """The config with the smallest geometric mean time over the sizes (each size counts the same) among those that
    launched at every size, and its geometric-mean time ratio to `base`; None if `base` (the current TILES entry)
    did not launch at every size: then there is no ratio to give, and the does_not_launch records say why."""
    def geomean(i):
        return math.exp(sum(math.log(t[i]) for t in times.values()) / len(times))

    ran = [i for i in range(len(configs)) if all(t[i] is not None for t in times.values())]
    if not ran or configs.index(base) not in ran:
        return None
    best = min(ran, key=geomean)
    return configs[best], geomean(best) / geomean(configs.index(base))


def tile_records(sizes, dim: int, device: torch.device, repeats: int, interpreter: bool) -> list[dict]:
    from course_lib.kernels.nt_xent_triton import launch_config

    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    records = []
    for dtype in DTYPES:
        base = launch_config(dim, DTYPES[dtype], capability)
        configs = tile_candidates(base)
        times = {}
        for rows in sizes:
            z = _inputs(rows, dim, dtype, device).requires_grad_(True)
            times[rows] = time_tiles(z, configs, repeats)
            for config, ms in zip(configs, times[rows]):
                point = dict(rows=rows, dim=dim, dtype=dtype, capability=capability, config=asdict(config),
                             current=config == base, interpreter=interpreter)
                records.append(record("nt_xent_tiles", "fused_triton", "fwd_bwd_time", ms, "ms", device, **point)
                               if ms is not None else
                               record("nt_xent_tiles", "fused_triton", "does_not_launch", 1.0, "flag", device, **point))
            print(f"{dtype} 2N={rows:>6}: " + ", ".join(f"{c.block_m}x{c.block_n} {t and round(t, 3)} ms"
                                                        for c, t in zip(configs, times[rows])), flush=True)
        chosen = tile_choice(configs, times, base)
        records.append(record("nt_xent_tiles", "fused_triton", "tile_choice", chosen and chosen[1], "x", device,
                              dtype=dtype, capability=capability, rows=list(sizes), interpreter=interpreter,
                              config=chosen and asdict(chosen[0]), current_config=asdict(base),
                              meaning="value: the chosen config's geometric-mean time over the sizes, relative to "
                                      "the current TILES entry (< 1: faster); null: the current entry did not launch"))
    return records


def _no_slower(rows: int, times: dict, out_of_memory: set) -> bool:
    """At this 2N, the fused kernel ran and the naive loss either ran out of memory or took at least as long."""
    fused, naive = times.get(("fused_triton", rows)), times.get(("naive_torch", rows))
    if fused is None:
        return False
    return ("naive_torch", rows) in out_of_memory or (naive is not None and fused <= naive)


def fused_min_rows_from(records: list[dict], dtype: str) -> tuple[int | None, list[dict]]:
    """The smallest measured 2N from which the fused kernel is no slower than the naive loss at that size and at
    every larger measured size, for one dtype of benchmarks/nt_xent.py's records; None if there is none. And the
    evidence: per size, both times (None: not measured or out of memory) and the verdict."""
    mine = [r for r in records if r.get("benchmark") == "nt_xent" and r.get("dtype") == dtype]
    times = {(r["variant"], r["rows"]): r["value"] for r in mine if r["metric"] == "fwd_bwd_time"}
    out_of_memory = {(r["variant"], r["rows"]) for r in mine if r["metric"] == "out_of_memory"}
    sizes = sorted({r["rows"] for r in mine if r["metric"] in ("fwd_bwd_time", "out_of_memory")})
    evidence = [{"rows": n, "naive_ms": times.get(("naive_torch", n)), "fused_ms": times.get(("fused_triton", n)),
                 "naive_out_of_memory": ("naive_torch", n) in out_of_memory,
                 "fused_no_slower": _no_slower(n, times, out_of_memory)} for n in sizes]
    choice = None
    for point in reversed(evidence):     # walk down from the largest size while the fused kernel keeps up
        if not point["fused_no_slower"]:
            break
        choice = point["rows"]
    return choice, evidence


def choose_fused_min_rows(records: list[dict], device: torch.device) -> list[dict]:
    """`fused_min_rows_choice` records for fp32, bf16 and both together (FUSED_MIN_ROWS is one threshold for
    every dtype: the larger of the two); value null, with the reason, where the data supports no choice."""
    from course_lib.kernels.nt_xent import FUSED_MIN_ROWS

    out, choices = [], {}
    for dtype in DTYPES:
        choices[dtype], evidence = fused_min_rows_from(records, dtype)
        if not evidence:
            reason = "benchmarks/nt_xent.py measured nothing in this dtype"
        elif choices[dtype] is None:
            reason = (f"the fused kernel is slower than the naive loss at the largest measured size "
                      f"(2N = {evidence[-1]['rows']}): no threshold to choose")
        else:
            reason = "the smallest measured 2N from which the fused kernel is no slower at every larger measured size"
        out.append(record("nt_xent", "fused_triton", "fused_min_rows_choice", choices[dtype], "rows", device,
                          dtype=dtype, current=FUSED_MIN_ROWS, reason=reason, evidence=evidence))
    missing = [d for d, c in choices.items() if c is None]
    both = None if missing else max(choices.values())
    reason = (f"no choice for {', '.join(missing)}" if missing else
              "the larger of the per-dtype choices: impl='auto' is then no slower in either dtype")
    out.append(record("nt_xent", "fused_triton", "fused_min_rows_choice", both, "rows", device,
                      dtype="+".join(DTYPES), current=FUSED_MIN_ROWS, reason=reason))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("parity", "tiles"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes (on a CPU: Triton's interpreter)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per tile shape and size (median)")
    args = parser.parse_args(argv)
    device = kernel_device("benchmarks/kernel_check.py", args.quick)
    if device is None:
        return 0
    cuda = device.type == "cuda"
    dim = QUICK_DIM if args.quick else DIM
    if args.what == "parity":
        records = parity_records(QUICK_PARITY_ROWS if args.quick else PARITY_ROWS, dim, device, not cuda)
    else:
        records = tile_records(QUICK_TILE_ROWS if args.quick else TILE_ROWS, dim, device,
                               1 if args.quick else args.repeats, not cuda)
    out = args.out or (Path(tempfile.mkdtemp(prefix="kernel_check_")) if not cuda else None)  # CPU times: no results
    write_results(f"nt_xent_{args.what}", device, records, out)
    outside = [r for r in records if r.get("within_tolerance") is False]
    for r in outside:
        print(f"OUTSIDE TOLERANCE: {r['dtype']} 2N={r['rows']} {r['metric']} = {r['value']:.3g} > {r['tolerance']:g}")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
