"""Exact resume, tried the hard way: a real training process is killed with SIGKILL after its first
checkpoint, a new process resumes it, and the result must equal an uninterrupted run bit for bit (on a
CPU), for the smoke presets of SimCLR (with its time budget) and of Omniglot MAML."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

CHILD = Path(__file__).with_name("training_child.py")
ENV = {**os.environ, "PYTHONPATH": str(CHILD.parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _run(which: str, checkpoint: Path, out: Path) -> dict:
    subprocess.run([sys.executable, str(CHILD), which, str(checkpoint), str(out)], check=True, env=ENV, timeout=300)
    return torch.load(out, weights_only=True)


def _run_here(which: str, checkpoint: Path) -> dict:
    """The uninterrupted run, in this process, with the child's thread count (the same reduction order)."""
    sys.path.insert(0, str(CHILD.parent))
    threads = torch.get_num_threads()
    try:
        import training_child

        torch.set_num_threads(1)
        model, history = getattr(training_child, which)(str(checkpoint))
    finally:
        torch.set_num_threads(threads)
        sys.path.remove(str(CHILD.parent))
    return {"model": model.state_dict(), "history": asdict(history)}


def _kill_after_first_checkpoint(which: str, checkpoint: Path, out: Path) -> None:
    child = subprocess.Popen([sys.executable, str(CHILD), which, str(checkpoint), str(out), "--hang-after-first-save"],
                             stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 240)  # never wait forever on a stuck child
        assert ready, "the training process wrote no checkpoint within 4 minutes"
        assert child.stdout.readline().strip() == "saved", "the training process ended before its first checkpoint"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        child.kill()
    assert checkpoint.is_file() and not out.exists()  # killed mid-run: a checkpoint, no result


def _without_times(history: dict) -> dict:
    return {**history, "seconds": None, "segments": None,
            "evals": [{k: v for k, v in e.items() if k != "seconds"} for e in history["evals"]]}


@pytest.mark.parametrize("which", ["simclr", "maml"])
def test_a_killed_run_resumes_bit_for_bit(tmp_path, which):
    straight = _run_here(which, tmp_path / "straight.pt")
    _kill_after_first_checkpoint(which, tmp_path / "killed.pt", tmp_path / "resumed.out")
    first = torch.load(tmp_path / "killed.pt", weights_only=True)["history"]
    assert len(first["per_step"]["loss"]) == 1  # killed after step 1 of the plan
    resumed = _run(which, tmp_path / "killed.pt", tmp_path / "resumed.out")

    assert resumed["history"]["total_steps"] == straight["history"]["total_steps"] > 1
    assert len(resumed["history"]["segments"]) == 2  # the killed call and the resuming one
    assert _without_times(resumed["history"]) == _without_times(straight["history"])
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
