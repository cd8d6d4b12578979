"""course_lib.runtime's CPU threads: the CPUs a process may use (affinity, cgroup v1/v2 quota, read from fake
cgroup files), the thread choice and its reason (argument > COURSE_THREADS > OMP_NUM_THREADS > capped default)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib import runtime


@pytest.fixture(autouse=True)
def clean_threads(monkeypatch):
    """No thread variables, no remembered choice, torch's threads put back; records inter-op settings instead of
    making them (torch accepts one per process)."""
    threads = torch.get_num_threads()
    for name in ("COURSE_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "_last_choice", None)
    monkeypatch.setattr(runtime, "_torch_default_threads", 8)  # as on an 8-core machine
    calls = []
    monkeypatch.setattr(torch, "set_num_interop_threads", calls.append)
    yield calls
    torch.set_num_threads(threads)


def cgroup(tmp_path: Path, files: dict[str, str | bytes], own: str = "/") -> dict[str, Path]:
    """A fake cgroup tree under tmp_path ({relative path: content}) and a fake /proc/self/cgroup naming `own`."""
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(f"0::{own}\n")
    return {"cgroup_root": root, "proc_cgroup": proc}


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs, rounded up
    ({"cpu.max": "200000 100000\n"}, 2),
    ({"cpu.max": "10000 100000\n"}, 1),  # a tenth of a CPU is still one thread
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
    ({"cpu/cpu.cfs_quota_us": "250000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "100000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 1),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_cgroup_quota_v1_and_v2(tmp_path, files, expected):
    assert runtime.cgroup_cpu_quota(**cgroup(tmp_path, files)) == expected


@pytest.mark.parametrize("files", [
    {"cpu.max": "banana"}, {"cpu.max": ""}, {"cpu.max": "150000 100000 7"}, {"cpu.max": "150000 0"},
    {"cpu.max": "-5 100000"}, {"cpu.max": "1.5 1"}, {"cpu.max": b"\xff\xfe\x00"},
    {"cpu.max/inside": "a folder where a file should be"},
    {"cpu/cpu.cfs_quota_us": "200000"},  # no period
    {"cpu/cpu.cfs_quota_us": "2 3", "cpu/cpu.cfs_period_us": "100000"},
])
def test_odd_cgroup_files_mean_no_quota(tmp_path, files):
    assert runtime.cgroup_cpu_quota(**cgroup(tmp_path, files)) is None


def test_the_quota_of_the_process_cgroup_and_those_above_it_counts(tmp_path):
    """A JupyterHub user's systemd unit carries the limit, not the root; the smallest limit on the way up wins."""
    own = "/system.slice/jupyter-alice.service"
    files = {"cpu.max": "max 100000", "system.slice/cpu.max": "400000 100000",
             f"{own[1:]}/cpu.max": "150000 100000"}
    assert runtime.cgroup_cpu_quota(**cgroup(tmp_path, files, own=own)) == 2
    tighter = {**files, "system.slice/cpu.max": "100000 100000"}
    assert runtime.cgroup_cpu_quota(**cgroup(tmp_path / "b", tighter, own=own)) == 1
    assert runtime.cgroup_cpu_quota(**cgroup(tmp_path / "c", files, own="/../../etc")) is None  # stays in the tree


def test_allowed_cpus_is_the_affinity_capped_by_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert runtime.allowed_cpus(**cgroup(tmp_path, {"cpu.max": "150000 100000"})) == 2
    assert runtime.allowed_cpus(**cgroup(tmp_path / "b", {"cpu.max": "800000 100000"})) == 4
    assert runtime.allowed_cpus(**cgroup(tmp_path / "c", {})) == 4
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert runtime.allowed_cpus(**cgroup(tmp_path / "d", {})) == 3


def test_the_default_is_torch_default_capped_to_the_allowed_cpus(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    choice = runtime.configure_threads(**cgroup(tmp_path, {"cpu.max": "100000 100000"}))
    assert choice.threads == torch.get_num_threads() == 1 and choice.source == "default"
    assert choice.line == ("torch uses 1 CPU thread: 1 CPU allowed (affinity 4, cgroup quota 1), torch's default 8; "
                           "set COURSE_THREADS to change")
    assert capsys.readouterr().out == choice.line + "\n"
    again = runtime.configure_threads(verbose=False, **cgroup(tmp_path / "b", {}))  # re-run: torch's own default
    assert again.threads == torch.get_num_threads() == 4 and "4 CPUs allowed (affinity 4, cgroup quota none)" in again.line
    assert capsys.readouterr().out == ""


def test_argument_then_course_threads_then_omp_num_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    fake = cgroup(tmp_path, {})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    choice = runtime.configure_threads(verbose=False, **fake)
    assert (choice.source, choice.threads, torch.get_num_threads()) == ("OMP_NUM_THREADS", 1, 1)
    assert choice.line.startswith("torch uses 1 CPU thread: OMP_NUM_THREADS=1; 2 CPUs allowed")
    monkeypatch.setenv("COURSE_THREADS", " 2 ")
    choice = runtime.configure_threads(verbose=False, **fake)
    assert (choice.source, choice.threads, torch.get_num_threads()) == ("COURSE_THREADS", 2, 2)
    choice = runtime.configure_threads(1, verbose=False, **fake)
    assert (choice.source, choice.threads, torch.get_num_threads()) == ("argument", 1, 1)
    assert "asked for by configure_threads(1)" in choice.line
    choice = runtime.configure_threads(3, verbose=False, **fake)  # an explicit choice is kept, with a warning
    assert torch.get_num_threads() == 3 and "more threads than CPUs allowed" in choice.line


@pytest.mark.parametrize("omp", ["", "x", "0", "-1"])
def test_an_odd_omp_num_threads_is_ignored(tmp_path, monkeypatch, omp):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    choice = runtime.configure_threads(verbose=False, **cgroup(tmp_path, {}))
    assert (choice.source, choice.threads) == ("default", 1)


def test_omp_num_threads_per_level_takes_the_first(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1,4")
    assert runtime.configure_threads(verbose=False, **cgroup(tmp_path, {})).threads == 1


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "2 threads", "²"])
def test_an_invalid_course_threads_says_what_is_expected(tmp_path, monkeypatch, value):
    monkeypatch.setenv("COURSE_THREADS", value)
    before = torch.get_num_threads()
    with pytest.raises(ValueError) as err:
        runtime.configure_threads(**cgroup(tmp_path, {}))
    assert f"COURSE_THREADS={value!r}" in str(err.value) and "positive integer" in str(err.value)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("value", [0, -2, True, 1.5, "x"])
def test_an_invalid_argument_says_what_is_expected(value):
    with pytest.raises(ValueError, match=r"configure_threads\(requested\)=.*positive integer"):
        runtime.configure_threads(value)


def test_interop_threads_follow_unless_torch_refuses(tmp_path, monkeypatch, clean_threads):
    fake = cgroup(tmp_path, {})
    real = torch.get_num_interop_threads()
    runtime.configure_threads(real, verbose=False, **fake)
    assert clean_threads == []  # already right: nothing to set
    runtime.configure_threads(real + 1, verbose=False, **fake)
    assert clean_threads == [real + 1]

    def refuse(n):
        raise RuntimeError("Error: cannot set number of interop threads after parallel work has started")

    monkeypatch.setattr(torch, "set_num_interop_threads", refuse)
    choice = runtime.configure_threads(real + 1, verbose=False, **fake)
    assert choice.threads == torch.get_num_threads() == real + 1 and choice.interop == real  # left as it was


def test_report_explains_the_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_TIER", "smoke")
    assert runtime.report(verbose=False)["thread choice"].startswith("not set by configure_threads() (")
    choice = runtime.configure_threads(1, verbose=False, **cgroup(tmp_path, {}))
    info = runtime.report(verbose=False)
    assert info["cpu threads"] == 1 and info["thread choice"] == choice.line
    torch.set_num_threads(2)  # changed behind its back: the old reason no longer holds
    assert runtime.report(verbose=False)["thread choice"].startswith("not set by configure_threads()")


def test_in_a_fresh_process_nothing_changes_at_import_and_interop_is_set_before_parallel_work():
    code = ("import torch; default = torch.get_num_threads()\n"
            "from course_lib import runtime\n"
            "assert torch.get_num_threads() == default, 'import changed the threads'\n"
            "choice = runtime.configure_threads(verbose=False)\n"
            "assert (choice.threads, torch.get_num_threads(), choice.interop) == (1, 1, 1), choice\n"
            "torch.ones(256, 256) @ torch.ones(256, 256)\n"
            "later = runtime.configure_threads(2, verbose=False)  # torch refuses a second inter-op setting: kept\n"
            "assert (later.threads, later.interop, torch.get_num_interop_threads()) == (2, 1, 1), later\n"
            "print('ok')\n")
    env = {**os.environ, "COURSE_THREADS": "1"}
    env.pop("OMP_NUM_THREADS", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[1], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
