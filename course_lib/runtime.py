"""Where the course runs: device, seeding, the run tier, the data folder, and a one-call report.

The run tier is read here and nowhere else. Notebooks and library code ask for a preset with
`pick(presets)` instead of branching on the tier themselves:

    CONFIGS = {"smoke": Config(epochs=1), "laptop": Config(epochs=20), "full": Config(epochs=200)}
    cfg = pick(CONFIGS)          # the preset for the current tier

Nothing in this module has side effects at import time.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from importlib import metadata
from pathlib import Path
from typing import Mapping, TypeVar

import numpy as np
import torch

TIERS = ("smoke", "laptop", "full")
TIER_HELP = {
    "smoke": "CI and tests: small real subsets, about 3 minutes per notebook on 2 CPU cores",
    "laptop": "a learner without a GPU: real, reduced data, about 20 minutes per notebook on 2 CPU cores",
    "full": "a learner with a GPU: the full datasets and the published recipes, minutes per notebook",
}
DEFAULT_DATA_DIR = Path.home() / ".cache" / "course_lib" / "data"
DEFAULT_RUNS_DIR = Path.home() / ".cache" / "course_lib" / "runs"

T = TypeVar("T")


def device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    `prefer` ("cuda", "mps", "cpu") forces a choice and fails clearly if it is not available.
    """
    if prefer is not None:
        if prefer == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device('cuda') was asked for, but torch sees no CUDA GPU; use device() to fall back.")
        if prefer == "mps" and not _mps_available():
            raise RuntimeError("device('mps') was asked for, but this torch has no usable MPS backend.")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_all(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) and return a CPU `torch.Generator` seeded the same.

    Library functions that draw random numbers take a `generator` argument; pass this one (or one
    of your own) to make a run reproducible without relying on global state.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def tier() -> str:
    """The run tier: `COURSE_TIER` if set, else "full" where CUDA is available, else "laptop"."""
    value = os.environ.get("COURSE_TIER", "").strip().lower()
    if not value:
        return "full" if torch.cuda.is_available() else "laptop"
    if value not in TIERS:
        raise ValueError(
            f"COURSE_TIER={value!r} is not a tier; expected one of {', '.join(TIERS)} "
            "(or leave it unset for the default: full with a GPU, else laptop)."
        )
    return value


def pick(presets: Mapping[str, T], tier_name: str | None = None) -> T:
    """The preset for `tier_name` (default: the current tier) from a {tier: preset} mapping."""
    name = tier() if tier_name is None else tier_name
    missing = [t for t in TIERS if t not in presets]
    if missing:
        raise KeyError(f"presets must define every tier {TIERS}; missing {missing}.")
    if name not in presets:
        raise ValueError(f"unknown tier {name!r}; expected one of {', '.join(TIERS)}.")
    return presets[name]


def data_dir() -> Path:
    """The one data folder: `COURSE_DATA_DIR` if set, else ~/.cache/course_lib/data."""
    env = os.environ.get("COURSE_DATA_DIR", "").strip()
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR


def runs_dir() -> Path:
    """Where training runs keep their checkpoints: `COURSE_RUNS_DIR` if set, else ~/.cache/course_lib/runs.

    Not a temporary folder: a learner's run must survive a restart of the machine and resume.
    """
    env = os.environ.get("COURSE_RUNS_DIR", "").strip()
    return Path(env).expanduser() if env else DEFAULT_RUNS_DIR


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def report(verbose: bool = True) -> dict:
    """Versions, device, tier and which datasets are present; printed as a table when `verbose`."""
    dev = device()
    folder = data_dir()
    info = {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": torch.__version__,
        **{name: _version(name) for name in ("torchvision", "triton", "scikit-learn", "ipywidgets", "matplotlib")},
        "device": str(dev) + (f" ({torch.cuda.get_device_name(0)})" if dev.type == "cuda" else ""),
        "cpu threads": torch.get_num_threads(),
        "tier": tier(),
        "data dir": str(folder),
        "runs dir": str(runs_dir()),
        "CIFAR-10 present": (folder / "cifar-10-batches-py").is_dir(),
        "Omniglot present": (folder / "omniglot-py" / "images_background").is_dir(),
    }
    if verbose:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key:>{width}} : {value}")
        print(f"{'':>{width}}   tier {info['tier']!r} = {TIER_HELP[info['tier']]}")
        if not (info["CIFAR-10 present"] and info["Omniglot present"]):
            print(
                f"{'':>{width}}   datasets missing: they are downloaded on first use where there is internet; "
                "offline, run `python ../shared/data/materialize.py DIR` or copy the official folders into "
                f"{folder} (or point COURSE_DATA_DIR at them)."
            )
    return info


__all__ = ["TIERS", "DEFAULT_DATA_DIR", "DEFAULT_RUNS_DIR", "device", "seed_all", "tier", "pick", "data_dir", "runs_dir",
           "report"]

if __name__ == "__main__":  # pragma: no cover - `python -m course_lib.runtime` prints the report
    report()
    sys.exit(0)
