"""Shared plumbing for the benchmarks: the record format of DESIGN.md and where results go.

Each benchmark script measures one thing, prints a short table and writes
benchmarks/results/<name>-<device>.json: a list of records
{"benchmark", "variant", "metric", "value", "unit", "device", "date", "command"}.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def device_tag(device: torch.device) -> str:
    """'cpu', or the card's short name on CUDA ('h100', 'h200', 'a100', ...)."""
    if device.type != "cuda":
        return device.type
    name = torch.cuda.get_device_name(device).lower()
    for card in ("h200", "h100", "a100", "a10g", "l40s", "l4", "a6000", "v100", "t4", "4090", "3090"):
        if card in name:
            return card
    return name.replace("nvidia", "").strip().replace(" ", "-")


def record(benchmark: str, variant: str, metric: str, value: float, unit: str, device: torch.device, **extra) -> dict:
    """One measured figure in the DESIGN.md format (extra keys, e.g. the data used, are kept)."""
    return {
        "benchmark": benchmark,
        "variant": variant,
        "metric": metric,
        "value": value,
        "unit": unit,
        "device": device_tag(device) if device.type == "cpu" else f"{device_tag(device)} ({torch.cuda.get_device_name(device)})",
        "date": _dt.date.today().isoformat(),
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        **extra,
    }


def write_results(name: str, device: torch.device, records: list[dict], out_dir: Path | None = None) -> Path:
    """Write records to <out_dir or benchmarks/results>/<name>-<device>.json and print a table."""
    folder = Path(out_dir) if out_dir else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{device_tag(device)}.json"
    path.write_text(json.dumps(records, indent=2) + "\n")
    width = max(len(r["variant"]) for r in records)
    for r in records:
        print(f"{r['variant']:<{width}}  {r['metric']:<28} {r['value']:>14.4g} {r['unit']}")
    print(f"wrote {path}")
    return path


def kernel_device(script: str, quick: bool) -> torch.device | None:
    """Where a Triton kernel benchmark runs: the GPU; with `quick` and no GPU, the CPU in Triton's interpreter (set
    here, before anything imports Triton); None, after saying so, where it needs a GPU and sees none."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if not quick:
        print(f"{script} measures the fused kernel on a CUDA GPU and none is visible: nothing was measured. "
              "Use --quick to check the script in Triton's CPU interpreter.")
        return None
    os.environ["TRITON_INTERPRET"] = "1"
    return torch.device("cpu")


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of fn() over `repeats` runs, synchronising CUDA around each."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
