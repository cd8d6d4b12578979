"""One prepared command for a lent GPU: the kit's CUDA checks and benchmarks, each stage in its own process.

    PYTHONPATH=. python benchmarks/gpu_check.py --data DIR          # every stage in order, until the deadline
    PYTHONPATH=. python benchmarks/gpu_check.py --data DIR --skip tta_simclr tta_maml   # one slot, then ...
    PYTHONPATH=. python benchmarks/gpu_check.py --data DIR --only tta_simclr tta_maml   # ... a second one
    python benchmarks/gpu_check.py --cpu-smoke --out /tmp/check     # tiny sizes on a CPU (CI): about 90 s

Stages, in this order (`--only` / `--skip` choose among them):
  cuda_tests  tests/test_kernels.py and tests/test_augment.py under pytest (where pytest is installed), and the
              fused NT-Xent's parity with the reference in fp32 and bf16 (benchmarks/kernel_check.py parity),
              failed when outside the tolerances course_lib/kernels/nt_xent.py documents
  nt_xent     benchmarks/nt_xent.py (2N = 1k..131k); the FUSED_MIN_ROWS it supports (`fused_min_rows_choice`);
              tile shapes around this GPU's TILES entry, timed (`tile_choice`; benchmarks/kernel_check.py tiles)
  augment, simclr, maml, tsne
              benchmarks/augment.py --device cuda, simclr.py and maml.py throughput only, tsne.py at 10,000 points
  notebooks   each course notebook's code, headless, tier smoke, on CUDA with torch.compile on in the SimCLR
              preset (benchmarks/notebook_smoke.py), one process each
  tta_simclr  benchmarks/simclr.py's time to accuracy (ResNet-18, all of CIFAR-10, compile, bf16), 6 minutes
  tta_maml    benchmarks/maml.py's time to accuracy, Omniglot 5-way 1-shot, tier full, 3 minutes

Every figure is a DESIGN.md record (benchmarks/common.record, the device named), and
<out>/gpu_check-<card>.json (default out: benchmarks/results; with --only or --skip the stages run are in the
name, e.g. gpu_check-tta_simclr-h200.json) is rewritten atomically after every step, so a run that is cut
off still leaves everything measured so far. Each step runs in a subprocess with its own timeout; its
record says ok, failed (with its output's last lines), skipped (and why) or timed out, and its seconds.
The deadline (--deadline-s, default 540) counts from the start: a step that cannot fit in what is left is
skipped (out of time), and the time-to-accuracy runs train for their nominal budget or for less where less
is left (the budget used is recorded; nothing is extrapolated). The FUSED_MIN_ROWS and tile choices are
records only: setting them in course_lib/kernels is a maintainer's commit afterwards.

--cpu-smoke runs the same stages on a CPU with tiny sizes (kernels in Triton's interpreter, no pytest,
notebooks 00 and 01 with the headless stand-ins forced on, a few seconds of time to accuracy), so that
the script cannot rot; its results go to a temporary folder unless --out is given (CPU timings are not
results). Without CUDA and without --cpu-smoke, nothing is measured (exit 0).
Exit status: 0 if every stage that ran is ok, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, device_tag, record  # noqa: E402
from benchmarks.gpu_stages import BUILDERS, REPO, STAGES, Deadline, Run, Step, step_timeout  # noqa: E402
from course_lib.checkpoint import atomic_write  # noqa: E402

OUTPUT_TAIL = 40   # lines of a failing step's output kept in its record


def stage_status(statuses: list[str]) -> str:
    """A stage's status from its steps': skipped if none ran, else its worst (failed, timed out) or ok."""
    ran = [s for s in statuses if s != "skipped"]
    if not ran:
        return "skipped"
    return next((bad for bad in ("failed", "timed out") if bad in ran), "ok")


# ----------------------------------------------------------------------------- running them

def child_env(data: Path | None, scratch: Path) -> dict:
    """The environment of every step: the repository importable, the data folder, and a fresh runs folder (a
    notebook resumes training runs it finds there, and measurements must train)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               COURSE_RUNS_DIR=str(scratch / "runs"), MPLBACKEND="Agg")
    if data is not None:
        env["COURSE_DATA_DIR"] = str(data)
    return env


def read_records(folder: Path) -> list[dict]:
    """The records a step wrote: every JSON list in its folder (a benchmark's <name>-<device>.json)."""
    found = []
    for path in sorted(folder.glob("*.json")):
        content = json.loads(path.read_text())
        if isinstance(content, list):
            found += content
    return found


def tail(path: Path, lines: int = OUTPUT_TAIL) -> list[str]:
    return path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []


def execute(step: Step, env: dict, timeout: float) -> tuple[str, dict]:
    """Run the step's subprocess in its own process group (killed whole on timeout: DataLoader workers and
    compile workers too); its status and what to record about it."""
    log = step.folder / "output.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *step.argv], cwd=REPO, env={**env, **step.env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "timed out", {"timeout_s": timeout, "output_tail": tail(log)}
        except BaseException:   # Ctrl-C or SIGTERM (see main): the step must not go on using the GPU alone
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    if code != 0:
        return "failed", {"exit_code": code, "output_tail": tail(log)}
    return "ok", {}


def run_step(step: Step, run: Run, env: dict) -> tuple[str, float, dict]:
    """(status, seconds, facts) of one step, skipped without running where it cannot or need not run."""
    timeout = step_timeout(step.need_s, step.limit_s, run.deadline.left())
    if step.skip or timeout is None:
        why = step.skip or (f"out of time: {run.deadline.left():.0f} s left of the deadline, "
                            f"and it needs {step.need_s:g} s")
        return "skipped", 0.0, {**step.facts, "reason": why}
    start = time.monotonic()
    status, facts = execute(step, env, timeout)
    return status, time.monotonic() - start, {**step.facts, "step_command": "python " + " ".join(step.argv), **facts}


def collect(step: Step, earlier: list[dict]) -> tuple[list[dict], dict]:
    """The step's records (and those it derives from the stage's so far) and facts read from its folder."""
    records = read_records(step.folder)
    if step.derive:
        records += step.derive(earlier + records)
    return records, step.detail(step.folder) if step.detail else {}


def run_stage(stage: str, run: Run, env: dict, sink: Callable[[list[dict]], None]) -> str:
    """Every step of `stage` in order; each one's records (and the stage's record at the end) go to sink()."""
    start, statuses, stage_records = time.monotonic(), {}, []
    for step in BUILDERS[stage](run):
        status, seconds, facts = run_step(step, run, env)
        try:
            records, more = collect(step, stage_records)
            facts.update(more)
        except Exception as exc:   # output cut short by a crash, say: record it, and go on with the next steps
            records, status = [], "failed"
            facts["unreadable_output"] = f"{type(exc).__name__}: {exc}"
        stage_records += records
        statuses[step.name] = status
        sink(records + [record("gpu_check", f"{stage}/{step.name}", "step_seconds", seconds, "s", run.device,
                               status=status, **facts)])
        print(f"[{run.deadline.left():5.0f} s left] {stage}/{step.name}: {status} in {seconds:.1f} s"
              + (f" ({facts['reason']})" if "reason" in facts else ""), flush=True)
    status = stage_status(list(statuses.values()))
    sink([record("gpu_check", stage, "stage_seconds", time.monotonic() - start, "s", run.device, status=status,
                 steps=statuses)])
    return status


def write_records(path: Path, records: list[dict]) -> None:
    """All records so far, replacing the file whole: a run cut off mid-write leaves the previous version."""
    with atomic_write(path, "w") as fh:
        fh.write(json.dumps(records, indent=2) + "\n")


def results_path(out: Path, selected: list[str], device: torch.device) -> Path:
    """<out>/gpu_check-<card>.json, with the stages in the name when not all of them run (a second command's
    file must not replace the first's)."""
    name = "gpu_check" if selected == list(STAGES) else "gpu_check-" + "+".join(selected)
    return out / f"{name}-{device_tag(device)}.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="data folder: sets COURSE_DATA_DIR for every stage")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default benchmarks/results; with --cpu-smoke a temporary one)")
    parser.add_argument("--deadline-s", type=float, default=540.0, help="seconds for the whole run (default 540)")
    parser.add_argument("--only", nargs="+", choices=STAGES, metavar="STAGE",
                        help=f"run only these: {', '.join(STAGES)}")
    parser.add_argument("--skip", nargs="+", choices=STAGES, metavar="STAGE", default=[], help="run all but these")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: checks that the script runs")
    args = parser.parse_args(argv)
    if args.data is not None and not args.data.is_dir():
        parser.error(f"--data {args.data}: no such folder (it should hold cifar-10-batches-py and omniglot-py)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    deadline = Deadline(args.deadline_s)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # killed from outside: end the running step too
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("benchmarks/gpu_check.py checks a CUDA GPU and none is visible, so nothing was measured. "
              "Use --cpu-smoke to check the script itself on this CPU (tiny sizes).")
        return 0
    selected = [s for s in STAGES if (args.only is None or s in args.only) and s not in args.skip]
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    out = args.out or (Path(tempfile.mkdtemp(prefix="gpu_check_smoke_")) if args.cpu_smoke else RESULTS)
    path, records = results_path(out, selected, device), []

    def sink(new: list[dict]) -> None:
        records.extend(new)
        write_records(path, records)

    sink([record("gpu_check", "run", "deadline_s", args.deadline_s, "s", device, stages=selected,
                 torch=torch.__version__, cuda=torch.version.cuda, cpu_smoke=args.cpu_smoke,
                 capability=torch.cuda.get_device_capability() if device.type == "cuda" else None)])
    card = torch.cuda.get_device_name() if device.type == "cuda" else "the CPU (--cpu-smoke)"
    print(f"gpu_check on {card}: {', '.join(selected)}; "
          f"deadline {args.deadline_s:g} s; records in {path}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as scratch:
        run = Run(args.cpu_smoke, deadline, Path(scratch), device)
        env = child_env(args.data.resolve() if args.data else None, run.scratch)
        if args.cpu_smoke:
            env["CUDA_VISIBLE_DEVICES"] = ""   # the smoke run stays on the CPU even where a GPU is visible
        statuses = {stage: run_stage(stage, run, env, sink) for stage in selected}
    print("\n".join(f"{stage:>11}: {status}" for stage, status in statuses.items()) + f"\nwrote {path}")
    return 0 if all(s in ("ok", "skipped") for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
