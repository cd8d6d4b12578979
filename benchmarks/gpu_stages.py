"""The stages of benchmarks/gpu_check.py: which subprocesses each one runs, with what options and time limits.

    from benchmarks.gpu_stages import BUILDERS, STAGES
    steps = BUILDERS["nt_xent"](run)      # the steps of one stage, built when it starts (budgets use the time left)

gpu_check.py runs the steps and records them; this module says what they are. Each step is `python argv...`
in the repository with a folder of its own, where it writes its records (JSON lists, e.g. a benchmark's
<name>-<device>.json) and anything else its `detail` reads back (pytest's JUnit XML, a notebook's report).
On a GPU the steps get GPU_STEP's time limits; on --cpu-smoke each gets SMOKE_STEP and the tiny sizes.
"""

from __future__ import annotations

import importlib.util
import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parent.parent
STAGES = ("cuda_tests", "nt_xent", "augment", "simclr", "maml", "tsne", "notebooks", "tta_simclr", "tta_maml")
CUDA_TESTS = ("tests/test_kernels.py", "tests/test_augment.py")
# Seconds per step on a GPU: (least worth starting it with, its timeout). On --cpu-smoke, SMOKE_STEP for all.
GPU_STEP = {"pytest": (60, 300), "parity": (20, 120), "nt_xent.py": (60, 300), "tiles": (30, 180),
            "augment.py": (30, 150), "simclr.py": (120, 300), "maml.py": (20, 120), "tsne.py": (40, 240),
            "notebook": (30, 300)}
SMOKE_STEP = (5, 90)
# Time to accuracy, seconds: (nominal training budget, overhead beyond the budget (start-up, data loading, the
# evaluations, which the budget does not count), least budget worth a run).
GPU_TTA = {"tta_simclr": (360, 120, 60), "tta_maml": (180, 90, 30)}
SMOKE_TTA = {"tta_simclr": (2, 60, 1), "tta_maml": (2, 60, 1)}


class Deadline:
    """Seconds left until `seconds` after its creation."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.clock, self.end = clock, clock() + seconds

    def left(self) -> float:
        return max(0.0, self.end - self.clock())


def step_timeout(need_s: float, limit_s: float, left_s: float) -> float | None:
    """A step's timeout: its own limit or what is left, whichever is less; None (skip it) if less than it needs."""
    return None if left_s < need_s else min(limit_s, left_s)


def tta_budget(nominal_s: float, overhead_s: float, least_s: float, left_s: float) -> float | None:
    """Training seconds of a time-to-accuracy run: its nominal budget, or what is left after its overhead if that
    is less; None (skip it) if that is below the least budget worth a run."""
    budget = min(nominal_s, left_s - overhead_s)
    return budget if budget >= least_s else None


@dataclass
class Step:
    """One subprocess of a stage: `python argv...` in the repository, with its own folder for what it writes."""

    name: str
    argv: list[str]
    folder: Path
    need_s: float
    limit_s: float
    env: dict = field(default_factory=dict)
    skip: str | None = None                                   # why it does not run at all
    facts: dict = field(default_factory=dict)                 # recorded with it (e.g. the budget used)
    detail: Callable[[Path], dict] | None = None              # more facts read from its folder after it ran
    derive: Callable[[list[dict]], list[dict]] | None = None  # records computed from the stage's records so far


@dataclass
class Run:
    """What every stage builder needs: the mode, the deadline, where steps write."""

    smoke: bool
    deadline: Deadline
    scratch: Path
    device: torch.device

    def step(self, stage: str, name: str, argv: list[str], kind: str | None = None, times: tuple | None = None,
             **more) -> Step:
        """A step of `stage`; "{folder}" in argv becomes its folder. times: (need_s, limit_s), else GPU_STEP[kind]'s
        (kind defaults to the name) or, on --cpu-smoke, SMOKE_STEP."""
        folder = self.scratch / stage / name
        folder.mkdir(parents=True, exist_ok=True)
        need, limit = times or (SMOKE_STEP if self.smoke else GPU_STEP[kind or name])
        return Step(name, [a.replace("{folder}", str(folder)) for a in argv], folder, need, limit, **more)

    @property
    def quick(self) -> list[str]:
        return ["--quick"] if self.smoke else []


def pytest_counts(folder: Path) -> dict:
    """Passed, failed, errors, skipped (and the failed tests' names) from pytest's JUnit XML in `folder`."""
    path = folder / "junit.xml"
    if not path.exists():
        return {}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in root.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {"passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": counts["failures"], "errors": counts["errors"], "skipped": counts["skipped"],
            "failed_tests": failed}


def cuda_tests(run: Run) -> list[Step]:
    pytest = run.step("cuda_tests", "pytest", ["-m", "pytest", *CUDA_TESTS, "-q", "-p", "no:cacheprovider",
                                               "-o", "addopts=", "--junitxml={folder}/junit.xml"], detail=pytest_counts)
    if run.smoke:
        pytest.skip = "--cpu-smoke: CI runs these test files itself, and their CUDA tests skip on a CPU"
    elif importlib.util.find_spec("pytest") is None:
        pytest.skip = "pytest is not installed here (the fused kernel's parity below runs without it)"
    return [pytest, run.step("cuda_tests", "parity", ["benchmarks/kernel_check.py", "parity", "--out", "{folder}",
                                                      *run.quick])]


def nt_xent(run: Run) -> list[Step]:
    from benchmarks.kernel_check import choose_fused_min_rows

    return [run.step("nt_xent", "nt_xent.py", ["benchmarks/nt_xent.py", "--out", "{folder}", *run.quick],
                     derive=lambda records: choose_fused_min_rows(records, run.device)),
            run.step("nt_xent", "tiles", ["benchmarks/kernel_check.py", "tiles", "--out", "{folder}", *run.quick])]


# The one-script stages: options on every run, and on a GPU only (--cpu-smoke adds --quick instead).
SCRIPT_OPTIONS = {"augment": ([], ["--device", "cuda"]), "simclr": (["--skip-accuracy"], []),
                  "maml": (["--skip-accuracy"], []), "tsne": ([], ["--sizes", "10000"])}


def one_script(stage: str) -> Callable[[Run], list[Step]]:
    def build(run: Run) -> list[Step]:
        always, on_gpu = SCRIPT_OPTIONS[stage]
        options = always + (run.quick if run.smoke else on_gpu)
        return [run.step(stage, f"{stage}.py", [f"benchmarks/{stage}.py", "--out", "{folder}", *options])]
    return build


def notebook_report(folder: Path) -> dict:
    """The notebook runner's report but its status (the step's status is its process's: a crash writes no report)."""
    path = folder / "report.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    report.pop("status", None)
    return report


def notebooks(run: Run) -> list[Step]:
    """Each course notebook in order (on --cpu-smoke only 00 and 01, with the stand-ins forced on)."""
    paths = sorted((REPO / "notebooks").glob("0*.ipynb"))[: 2 if run.smoke else None]
    mode = ["--stand-ins"] if run.smoke else ["--compile"]
    return [run.step("notebooks", path.stem, ["benchmarks/notebook_smoke.py", str(path), "--report",
                                              "{folder}/report.json", *mode], kind="notebook",
                     env={"COURSE_TIER": "smoke"}, detail=notebook_report) for path in paths]


def time_to_accuracy(stage: str) -> Callable[[Run], list[Step]]:
    """tta_simclr and tta_maml: the nominal budget, or less if less is left (decided when the stage starts)."""
    def build(run: Run) -> list[Step]:
        nominal, overhead, least = (SMOKE_TTA if run.smoke else GPU_TTA)[stage]
        script = "simclr" if stage == "tta_simclr" else "maml"
        budget = tta_budget(nominal, overhead, least, run.deadline.left())
        if budget is None:
            reason = (f"out of time: {run.deadline.left():.0f} s left, and a run needs {overhead} s besides at least "
                      f"{least} s of training")
            return [run.step(stage, f"{script}.py", [], kind=f"{script}.py", skip=reason,
                             facts={"nominal_budget_s": nominal})]
        options = (["--budget-min", f"{budget / 60:.6g}"] if script == "simclr" else
                   ["--budget", f"{budget:g}"] + ([] if run.smoke else ["--tier", "full"]))
        return [run.step(stage, f"{script}.py", [f"benchmarks/{script}.py", "--skip-throughput", "--out", "{folder}",
                                                 *options, *run.quick], times=(least + overhead, budget + overhead),
                         facts={"budget_s": budget, "nominal_budget_s": nominal})]
    return build


BUILDERS = {"cuda_tests": cuda_tests, "nt_xent": nt_xent, "augment": one_script("augment"),
            "simclr": one_script("simclr"), "maml": one_script("maml"), "tsne": one_script("tsne"),
            "notebooks": notebooks, "tta_simclr": time_to_accuracy("tta_simclr"),
            "tta_maml": time_to_accuracy("tta_maml")}
