"""Where the course runs: device, CPU threads, seeding, the run tier, the data folder, and a one-call report.

The run tier is read here and nowhere else. Notebooks and library code ask for a preset with
`pick(presets)` instead of branching on the tier themselves:

    CONFIGS = {"smoke": Config(epochs=1), "laptop": Config(epochs=20), "full": Config(epochs=200)}
    cfg = pick(CONFIGS)          # the preset for the current tier

Torch's CPU threads are set by `configure_threads()`, called first in a notebook: torch's default counts the
machine's cores, not the share a container or a JupyterHub gives this kernel (see `allowed_cpus`).

Nothing in this module has side effects at import time.
"""

from __future__ import annotations

import math
import os
import platform
import random
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Mapping, TypeVar

import numpy as np
import torch

TIERS = ("smoke", "laptop", "full")
TIER_HELP = {
    "smoke": "CI and tests: small real subsets, about 3 minutes per notebook on 2 CPU cores",
    "laptop": "a learner without a GPU: real, reduced data, about 20 minutes per notebook on 2 CPU cores",
    "full": "a learner with a GPU: the full datasets, the published recipes cut to fit minutes per notebook",
}
DEFAULT_DATA_DIR = Path.home() / ".cache" / "course_lib" / "data"
DEFAULT_RUNS_DIR = Path.home() / ".cache" / "course_lib" / "runs"
CGROUP_ROOT = Path("/sys/fs/cgroup")  # where Linux mounts the control groups (cgroup v2, or v1 controllers below)
PROC_SELF_CGROUP = Path("/proc/self/cgroup")  # this process's control group ("0::/path" under cgroup v2)

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


# -- CPU threads ---------------------------------------------------------------------------------------
_torch_default_threads: int | None = None  # torch's own choice, remembered at the first configure_threads()
_last_choice: ThreadChoice | None = None  # what report() explains


@dataclass(frozen=True)
class ThreadChoice:
    """What `configure_threads` chose for torch's intra-op threads, and why (`line`)."""

    threads: int  # torch.get_num_threads() after the call
    source: str  # where the number came from: "argument", "COURSE_THREADS", "OMP_NUM_THREADS" or "default"
    affinity: int  # CPUs the scheduler lets this process run on
    quota: int | None  # CPUs the cgroup quota pays for, rounded up; None: no quota
    torch_default: int  # torch's own default (it counts the machine's cores)
    interop: int  # torch.get_num_interop_threads() after the call

    @property
    def allowed(self) -> int:
        """CPUs this process may use: its affinity, capped by the cgroup quota."""
        return min(self.affinity, self.quota or self.affinity)

    @property
    def line(self) -> str:
        cpus = f"{_plural(self.allowed, 'CPU')} allowed (affinity {self.affinity}, cgroup quota {self.quota or 'none'})"
        why = {"argument": f"asked for by configure_threads({self.threads}); {cpus}",
               "COURSE_THREADS": f"COURSE_THREADS={self.threads}; {cpus}",
               "OMP_NUM_THREADS": f"OMP_NUM_THREADS={self.threads}; {cpus}; set COURSE_THREADS to change",
               "default": f"{cpus}, torch's default {self.torch_default}; set COURSE_THREADS to change"}[self.source]
        # Threads beyond the CPUs wait for one another at every parallel op: the slowdown is several-fold.
        crowded = " (more threads than CPUs allowed: expect slow runs)" if self.threads > self.allowed else ""
        return f"torch uses {_plural(self.threads, 'CPU thread')}: {why}{crowded}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _text(path: Path) -> str:
    """A small text file's content; "" when it is missing or unreadable (then it says nothing)."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _quota_cpus(quota: str, period: str) -> int | None:
    """ceil(quota / period) CPUs, at least 1; None for "max", -1 or anything that is not a positive count."""
    try:
        q, p = int(quota), int(period)
    except ValueError:  # "max" (cgroup v2: no quota) or garbage
        return None
    return max(1, math.ceil(q / p)) if q > 0 and p > 0 else None  # -1 is cgroup v1's "no quota"


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int | None:
    """CPUs the cgroup CPU quota pays for, rounded up (1.5 CPUs -> 2), or None when there is no quota.

    cgroup v2: `cpu.max` ("150000 100000" = 1.5 CPUs, "max 100000" = none) in this process's cgroup (named in
    `proc_cgroup`, e.g. a JupyterHub user's systemd unit) and in each one above it up to `cgroup_root`: a limit
    anywhere above applies too, so the smallest wins. cgroup v1: `cpu/cpu.cfs_quota_us` over `cpu.cfs_period_us`
    (-1 = none). Missing, unreadable or odd files mean no quota.
    """
    own = next((line[3:] for line in _text(proc_cgroup).splitlines() if line.startswith("0::")), "")
    parts = [p for p in own.strip().split("/") if p not in ("", ".", "..")]
    pairs = [_text(cgroup_root.joinpath(*parts[:i], "cpu.max")).split() for i in range(len(parts), -1, -1)]
    for v1 in (cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"):
        quota, period = _text(v1 / "cpu.cfs_quota_us").split(), _text(v1 / "cpu.cfs_period_us").split()
        pairs.append(quota + period if len(quota) == len(period) == 1 else [])
    quotas = [q for q in (_quota_cpus(*pair) for pair in pairs if len(pair) == 2) if q is not None]
    return min(quotas, default=None)


def _affinity() -> int:
    """CPUs the scheduler lets this process run on (taskset, cpusets); os.cpu_count() where that is unknown."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def allowed_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """CPUs this process may actually use: its affinity (`os.sched_getaffinity`), capped by the cgroup CPU quota."""
    affinity, quota = _affinity(), cgroup_cpu_quota(cgroup_root, proc_cgroup)
    return min(affinity, quota or affinity)


def _requested_threads(requested: int | None) -> tuple[str, int | None]:
    """(source, threads): the argument, else COURSE_THREADS, else OMP_NUM_THREADS; ("default", None) if none."""
    course = os.environ.get("COURSE_THREADS", "").strip()
    source, value = ("argument", requested) if requested is not None else ("COURSE_THREADS", course)
    if value not in (None, ""):
        if isinstance(value, bool) or not str(value).strip().isdecimal() or int(value) < 1:
            name = "configure_threads(requested)" if source == "argument" else source
            raise ValueError(f"{name}={value!r} is not a number of threads; expected a positive integer such as 1 "
                             "or 2 (or leave COURSE_THREADS unset: torch then uses the CPUs this machine allows).")
        return source, int(value)
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()  # OpenMP allows "4,2": threads per level
    if omp.isdecimal() and int(omp) > 0:  # OpenMP's own variable: ignored, not refused, when it is odd
        return "OMP_NUM_THREADS", int(omp)
    return "default", None


def _set_interop_threads(threads: int) -> int:
    """Inter-op threads = `threads` where torch still allows it; returns the number torch has."""
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # refused once parallel work has started or it was set before: left as it is
            pass
    return torch.get_num_interop_threads()


def configure_threads(requested: int | None = None, verbose: bool = True, *, cgroup_root: Path = CGROUP_ROOT,
                      proc_cgroup: Path = PROC_SELF_CGROUP) -> ThreadChoice:
    """Set torch's CPU (intra-op) threads and return the choice, printed as one line when `verbose`.

    The number: `requested`, else `COURSE_THREADS`, else `OMP_NUM_THREADS`, else torch's default capped to the
    CPUs this process may use (`allowed_cpus`). Why: torch's default counts the machine's cores, not the share a
    container or a JupyterHub gives this kernel, and threads beyond that share wait for one another at every op
    (one was reported to take 22 minutes instead of 1.6 on a shared 2-core server). Inter-op threads follow where torch
    still allows it (before any parallel work), so call this first. Calling again is safe.
    """
    global _torch_default_threads, _last_choice
    if _torch_default_threads is None:
        _torch_default_threads = torch.get_num_threads()
    source, threads = _requested_threads(requested)
    affinity, quota = _affinity(), cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if threads is None:
        threads = min(_torch_default_threads, affinity, quota or affinity)
    torch.set_num_threads(threads)
    _last_choice = ThreadChoice(threads=torch.get_num_threads(), source=source, affinity=affinity, quota=quota,
                                torch_default=_torch_default_threads, interop=_set_interop_threads(threads))
    if verbose:
        print(_last_choice.line)
    return _last_choice


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def report(verbose: bool = True) -> dict:
    """Versions, device, CPU threads (and why), tier and which datasets are present; a table when `verbose`."""
    dev = device()
    folder = data_dir()
    info = {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": torch.__version__,
        **{name: _version(name) for name in ("torchvision", "triton", "scikit-learn", "ipywidgets", "matplotlib")},
        "device": str(dev) + (f" ({torch.cuda.get_device_name(0)})" if dev.type == "cuda" else ""),
        "cpu threads": torch.get_num_threads(),
        "thread choice": (_last_choice.line if _last_choice and _last_choice.threads == torch.get_num_threads()
                          else f"not set by configure_threads() ({_plural(allowed_cpus(), 'CPU')} allowed)"),
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
            print(f"{'':>{width}}   datasets missing: they are downloaded on first use where there is internet; "
                  "offline, run `python ../shared/data/materialize.py DIR` or copy the official folders into "
                  f"{folder} (or point COURSE_DATA_DIR at them).")
    return info


__all__ = ["TIERS", "DEFAULT_DATA_DIR", "DEFAULT_RUNS_DIR", "ThreadChoice", "device", "cgroup_cpu_quota",
           "allowed_cpus", "configure_threads", "seed_all", "tier", "pick", "data_dir", "runs_dir", "report"]

if __name__ == "__main__":  # pragma: no cover - `python -m course_lib.runtime` prints the report
    report()
    sys.exit(0)
