"""benchmarks/gpu_check.py: its --cpu-smoke run end to end (about 90 s on 2 cores, marked slow), and its logic.

The logic: the FUSED_MIN_ROWS choice from nt_xent.py's records, the fastest tile shape, the deadline and
budget arithmetic, a step's statuses (failed, timed out with its process group killed), pytest's counts,
the headless stand-ins for IPython and ipywidgets (with a real explorer), and the headless notebook runner
on a notebook written here. No GPU needed: what only runs on CUDA is listed in the script's report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import gpu_check, headless  # noqa: E402
from benchmarks.common import record  # noqa: E402
from benchmarks.gpu_stages import STAGES, Deadline, Run, Step, pytest_counts, step_timeout, tta_budget  # noqa: E402
from benchmarks.kernel_check import choose_fused_min_rows, tile_candidates, tile_choice  # noqa: E402

CPU = torch.device("cpu")
DESIGN_KEYS = {"benchmark", "variant", "metric", "value", "unit", "device", "date", "command"}


# ----------------------------------------------------------------------------- the whole --cpu-smoke run

@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One `gpu_check.py --cpu-smoke` run (about 90 s): its process and the records it wrote."""
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--cpu-smoke", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    path = out / "gpu_check-cpu.json"
    return proc, json.loads(path.read_text()) if path.exists() else None


@pytest.mark.slow
def test_cpu_smoke_run_exits_0_with_every_stage_ok(smoke_run):
    proc, records = smoke_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert records is not None, "no gpu_check-cpu.json in --out"
    stages = {r["variant"]: r["status"] for r in records if r["metric"] == "stage_seconds"}
    assert stages == {stage: "ok" for stage in STAGES}


@pytest.mark.slow
def test_cpu_smoke_records_have_the_design_keys_and_the_choices(smoke_run):
    _, records = smoke_run
    assert all(DESIGN_KEYS <= set(r) for r in records), [r for r in records if not DESIGN_KEYS <= set(r)][:1]
    assert all(r["device"] == "cpu" for r in records)
    choices = {r["dtype"] for r in records if r["metric"] == "fused_min_rows_choice"}
    assert choices == {"fp32", "bf16", "fp32+bf16"}
    assert {r["dtype"] for r in records if r["metric"] == "tile_choice"} == {"fp32", "bf16"}
    parity = [r for r in records if r["benchmark"] == "nt_xent_parity"]
    assert parity and all(r["within_tolerance"] for r in parity)
    notebooks = [r for r in records if r["variant"].startswith("notebooks/")]
    assert [r["variant"] for r in notebooks] == ["notebooks/00_start_here", "notebooks/01_contrastive_loss_math"]
    assert all(r["stand_ins"] == ["IPython", "ipywidgets"] and r["cells_run"] == r["code_cells"] for r in notebooks)
    for stage in ("tta_simclr", "tta_maml"):
        step = next(r for r in records if r["variant"].startswith(f"{stage}/"))
        assert 0 < step["budget_s"] <= step["nominal_budget_s"]
    assert any(r["metric"] == "knn_top1_vs_time" for r in records)
    assert any(r["metric"] == "omniglot_5w1s_accuracy_at_budget" for r in records)


# ----------------------------------------------------------------------------- FUSED_MIN_ROWS and tiles

def _timings(dtype: str, points: dict) -> list[dict]:
    """nt_xent.py's records for {2N: (naive ms or "oom", fused ms)}."""
    out = []
    for rows, (naive, fused) in points.items():
        out.append(record("nt_xent", "naive_torch", "out_of_memory", 1.0, "flag", CPU, rows=rows, dtype=dtype)
                   if naive == "oom" else
                   record("nt_xent", "naive_torch", "fwd_bwd_time", naive, "ms", CPU, rows=rows, dtype=dtype))
        out.append(record("nt_xent", "fused_triton", "fwd_bwd_time", fused, "ms", CPU, rows=rows, dtype=dtype))
    return out


def _choices(records: list[dict]) -> dict:
    return {r["dtype"]: r["value"] for r in choose_fused_min_rows(records, CPU)}


def test_fused_min_rows_is_where_the_kernel_stays_no_slower_up_to_the_largest_size():
    fp32 = _timings("fp32", {1024: (1.0, 2.0), 4096: (3.0, 2.9), 16384: (40.0, 10.0), 131072: ("oom", 90.0)})
    # bf16: faster at 1,024, slower at 4,096: the choice is the start of the last run of no-slower sizes
    bf16 = _timings("bf16", {1024: (1.0, 0.5), 4096: (2.0, 2.5), 16384: (20.0, 8.0), 65536: (300.0, 90.0)})
    assert _choices(fp32 + bf16) == {"fp32": 4096, "bf16": 16384, "fp32+bf16": 16384}


def test_a_kernel_never_faster_gets_no_invented_threshold():
    fp32 = _timings("fp32", {1024: (1.0, 2.0), 4096: (3.0, 2.0), 16384: (10.0, 12.0)})   # slower at the largest
    bf16 = _timings("bf16", {1024: (1.0, 0.5)})
    records = choose_fused_min_rows(fp32 + bf16, CPU)
    by_dtype = {r["dtype"]: r for r in records}
    assert by_dtype["fp32"]["value"] is None and "slower" in by_dtype["fp32"]["reason"]
    assert [p["fused_no_slower"] for p in by_dtype["fp32"]["evidence"]] == [False, True, False]
    assert by_dtype["bf16"]["value"] == 1024
    assert by_dtype["fp32+bf16"]["value"] is None and "fp32" in by_dtype["fp32+bf16"]["reason"]


def test_no_measurement_is_no_choice():
    assert _choices([]) == {"fp32": None, "bf16": None, "fp32+bf16": None}


@dataclass(frozen=True)
class Tiles:
    """The fields of the kernel's LaunchConfig that tile_candidates varies (the real one imports Triton, which this
    test process must not import before tests/test_kernels.py sets its interpreter up; the smoke run uses it)."""

    block_m: int
    block_n: int
    block_d: int = 32


def test_tile_candidates_are_the_entry_and_its_valid_neighbours():
    assert tile_candidates(Tiles(64, 32)) == [Tiles(64, 32), Tiles(32, 32), Tiles(128, 32), Tiles(64, 16),
                                              Tiles(64, 64)]
    assert tile_candidates(Tiles(16, 256)) == [Tiles(16, 256), Tiles(32, 256), Tiles(16, 128)]  # 8 and 512: no


def test_tile_choice_is_fastest_over_all_sizes_and_skips_shapes_that_did_not_launch():
    base, wide, huge = Tiles(64, 32), Tiles(64, 64), Tiles(128, 64)
    times = {16384: [4.0, 2.0, 1.0], 65536: [64.0, 32.0, None]}   # huge fails to launch at 65,536
    chosen, ratio = tile_choice([base, wide, huge], times, base)
    assert chosen == wide and ratio == pytest.approx(0.5)
    assert tile_choice([base, wide], {16384: [None, 1.0]}, base) is None


# ----------------------------------------------------------------------------- deadline and budgets

def test_a_step_runs_with_the_smaller_of_its_limit_and_what_is_left():
    assert step_timeout(need_s=30, limit_s=300, left_s=500) == 300
    assert step_timeout(need_s=30, limit_s=300, left_s=100) == 100
    assert step_timeout(need_s=30, limit_s=300, left_s=29) is None


def test_time_to_accuracy_takes_its_budget_or_less_never_more():
    assert tta_budget(nominal_s=360, overhead_s=120, least_s=60, left_s=540) == 360
    assert tta_budget(nominal_s=360, overhead_s=120, least_s=60, left_s=300) == 180
    assert tta_budget(nominal_s=360, overhead_s=120, least_s=60, left_s=179) is None


def test_deadline_counts_down_from_its_start_and_stops_at_0():
    now = [100.0]
    deadline = Deadline(540, clock=lambda: now[0])
    now[0] += 40
    assert deadline.left() == 500
    now[0] += 1000
    assert deadline.left() == 0


def test_stage_status_is_its_worst_step_and_skipped_only_if_none_ran():
    assert gpu_check.stage_status(["skipped", "ok"]) == "ok"
    assert gpu_check.stage_status(["ok", "timed out"]) == "timed out"
    assert gpu_check.stage_status(["timed out", "failed", "ok"]) == "failed"
    assert gpu_check.stage_status(["skipped"]) == "skipped"


def test_results_of_a_partial_run_do_not_replace_the_full_runs_file(tmp_path):
    assert gpu_check.results_path(tmp_path, list(STAGES), CPU).name == "gpu_check-cpu.json"
    partial = gpu_check.results_path(tmp_path, ["tta_simclr", "tta_maml"], CPU)
    assert partial.name == "gpu_check-tta_simclr+tta_maml-cpu.json"


# ----------------------------------------------------------------------------- running a step

def _step(tmp_path: Path, code: str) -> Step:
    return Step("probe", ["-c", code], tmp_path, need_s=0, limit_s=60)


def test_a_failing_step_reports_its_exit_code_and_last_lines(tmp_path):
    step = _step(tmp_path, "print('about to fail'); raise SystemExit(3)")
    status, facts = gpu_check.execute(step, dict(os.environ), timeout=30)
    assert status == "failed" and facts["exit_code"] == 3 and facts["output_tail"] == ["about to fail"]


def test_a_step_past_its_timeout_is_killed_with_its_own_children(tmp_path):
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(60)")
    start = time.monotonic()
    status, facts = gpu_check.execute(_step(tmp_path, code), dict(os.environ), timeout=2)
    assert status == "timed out" and time.monotonic() - start < 20
    grandchild = Path(f"/proc/{facts['output_tail'][0]}/status")
    for _ in range(50):   # killed, then reaped by whoever adopted it
        if not grandchild.exists() or "\tZ" in grandchild.read_text():
            break
        time.sleep(0.1)
    assert not grandchild.exists() or "\tZ" in grandchild.read_text(), "the step's own child outlived its timeout"


def test_a_stage_records_each_step_and_goes_on_past_unreadable_output(tmp_path, monkeypatch):
    (tmp_path / "broken").mkdir()
    cut_short = tmp_path / "broken" / "nt_xent-cpu.json"          # a benchmark killed while writing its records
    broken = _step(tmp_path / "broken", f"open({str(cut_short)!r}, 'w').write('[{{\"bench')")
    late = Step("late", ["-c", "pass"], tmp_path / "late", need_s=10**6, limit_s=10**6)
    monkeypatch.setitem(gpu_check.BUILDERS, "probe", lambda run: [broken, late])
    run = Run(smoke=True, deadline=Deadline(60), scratch=tmp_path, device=CPU)
    sunk = []
    assert gpu_check.run_stage("probe", run, dict(os.environ), sunk.extend) == "failed"
    steps = {r["variant"]: r for r in sunk}
    assert steps["probe/probe"]["status"] == "failed" and "JSONDecodeError" in steps["probe/probe"]["unreadable_output"]
    assert steps["probe/late"]["status"] == "skipped" and steps["probe/late"]["reason"].startswith("out of time")
    assert steps["probe"]["steps"] == {"probe": "failed", "late": "skipped"}


def test_pytest_counts_come_from_its_junit_xml(tmp_path):
    (tmp_path / "junit.xml").write_text(
        '<testsuites><testsuite tests="5" failures="1" errors="1" skipped="2">'
        '<testcase classname="tests.test_kernels" name="test_a"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_kernels" name="test_b"><error message="y"/></testcase>'
        '<testcase classname="tests.test_augment" name="test_c"/>'
        '</testsuite></testsuites>')
    assert pytest_counts(tmp_path) == {"passed": 1, "failed": 1, "errors": 1, "skipped": 2,
                                       "failed_tests": ["tests.test_kernels::test_a", "tests.test_kernels::test_b"]}


# ----------------------------------------------------------------------------- headless stand-ins

@pytest.fixture
def stand_ins(monkeypatch):
    """headless.install(force=True), undone after the test."""
    for name in ("IPython", "IPython.display", "ipywidgets"):
        monkeypatch.setitem(sys.modules, name, None)
    assert headless.install(force=True) == ["IPython", "ipywidgets"]
    return sys.modules["ipywidgets"]


def test_stand_in_widgets_fire_observers_on_a_change_only(stand_ins):
    slider = stand_ins.IntSlider(value=5, min=0, max=10, description="steps")
    seen = []
    slider.observe(lambda change: seen.append((change["old"], change["new"])), names="value")
    slider.value = 7
    slider.value = 7            # the same value: traitlets sends nothing
    slider.value = 99           # clamped to max, as ipywidgets does
    assert seen == [(5, 7), (7, 10)] and slider.value == 10
    picker = stand_ins.Dropdown(options=[("cat", 3), ("dog", 5)], description="class")
    assert picker.value == 3
    with pytest.raises(ValueError, match="not one of its options"):
        picker.value = 4
    clicks = []
    button = stand_ins.Button(description="resample")
    button.on_click(clicks.append)
    button.click()
    assert clicks == [button]


def test_a_real_explorer_runs_on_the_stand_ins(stand_ins):
    from course_lib.explore.temperature import TemperatureExplorer

    explorer = TemperatureExplorer(temperatures=(0.05, 0.2))
    explorer.set(1, 0.5)                                   # moves the slider, whose observer updates the state
    assert explorer.temperatures == (0.05, 0.5)
    sys.modules["IPython.display"].display(explorer)       # draws the figure into the Output stand-in
    assert len(explorer.output.outputs) == 1 and explorer.output.outputs[0].data.startswith(b"\x89PNG")


# ----------------------------------------------------------------------------- the headless notebook runner

def _notebook(path: Path, *sources: str) -> Path:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# a title"]}]
    cells += [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": s}
              for s in sources]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_the_runner_strips_magics_shows_last_values_and_reports_the_failing_cell(tmp_path):
    nb = _notebook(tmp_path / "probe.ipynb",
                   "%matplotlib inline\n!echo hi\nx = 1",
                   "class Shown:\n    def _ipython_display_(self):\n        print('displayed', x)\nShown()",
                   "Shown();",                                 # a trailing ; shows nothing
                   "y = x + 1\nz = y / 0")
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "benchmarks/notebook_smoke.py", str(nb), "--stand-ins", "--report",
                           str(report)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("displayed 1") == 1
    result = json.loads(report.read_text())
    assert result["status"] == "failed" and result["cell"] == 4 and result["cells_run"] == 3
    assert result["error"].startswith("ZeroDivisionError")
    assert '<cell 4>", line 2' in "\n".join(result["traceback"]) and "z = y / 0" in "\n".join(result["traceback"])


def test_valid_python_is_never_stripped():
    from benchmarks.notebook_smoke import runnable_source

    assert runnable_source("a = (1\n     != 2)") == "a = (1\n     != 2)"
    assert runnable_source("%time\nb = 2") == "b = 2"
