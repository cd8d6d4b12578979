"""course_lib.runtime: the tier from COURSE_TIER, pick(), the data folder, seeding, device and the report."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import runtime


@pytest.mark.parametrize("value,expected", [("smoke", "smoke"), ("laptop", "laptop"), ("full", "full"),
                                            (" Smoke ", "smoke"), ("FULL", "full")])
def test_tier_from_env(monkeypatch, value, expected):
    monkeypatch.setenv("COURSE_TIER", value)
    assert runtime.tier() == expected


@pytest.mark.parametrize("cuda,expected", [(True, "full"), (False, "laptop")])
def test_default_tier_depends_on_cuda(monkeypatch, cuda, expected):
    monkeypatch.delenv("COURSE_TIER", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert runtime.tier() == expected
    monkeypatch.setenv("COURSE_TIER", "")
    assert runtime.tier() == expected


@pytest.mark.parametrize("value", ["fast", "smok", "gpu", "1"])
def test_invalid_tier_names_the_valid_ones(monkeypatch, value):
    monkeypatch.setenv("COURSE_TIER", value)
    with pytest.raises(ValueError) as err:
        runtime.tier()
    message = str(err.value)
    assert value in message and all(t in message for t in runtime.TIERS)


def test_pick_returns_the_preset_of_the_current_tier(monkeypatch):
    presets = {"smoke": 1, "laptop": 2, "full": 3}
    for name, value in presets.items():
        monkeypatch.setenv("COURSE_TIER", name)
        assert runtime.pick(presets) == value
    assert runtime.pick(presets, "laptop") == 2


def test_pick_rejects_incomplete_presets_and_unknown_tiers(monkeypatch):
    monkeypatch.setenv("COURSE_TIER", "smoke")
    with pytest.raises(KeyError, match="full"):
        runtime.pick({"smoke": 1, "laptop": 2})
    with pytest.raises(ValueError, match="unknown tier 'huge'"):
        runtime.pick({"smoke": 1, "laptop": 2, "full": 3}, "huge")


def test_data_dir_from_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert runtime.data_dir() == tmp_path
    monkeypatch.setenv("COURSE_DATA_DIR", "~/course-data")
    assert runtime.data_dir() == Path.home() / "course-data"
    monkeypatch.delenv("COURSE_DATA_DIR")
    assert runtime.data_dir() == runtime.DEFAULT_DATA_DIR
    assert "notebooks" not in runtime.DEFAULT_DATA_DIR.parts


def test_runs_dir_from_env_and_default_is_not_temporary(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    assert runtime.runs_dir() == tmp_path
    monkeypatch.delenv("COURSE_RUNS_DIR")
    assert runtime.runs_dir() == runtime.DEFAULT_RUNS_DIR
    assert not runtime.DEFAULT_RUNS_DIR.is_relative_to(tempfile.gettempdir()), "checkpoints must survive a reboot"


def test_seed_all_makes_every_generator_reproducible():
    def draw():
        gen = runtime.seed_all(123)
        return (random.random(), np.random.rand(), torch.rand(3).tolist(), torch.rand(2, generator=gen).tolist())

    first, second = draw(), draw()
    assert first == second
    runtime.seed_all(124)
    assert torch.rand(3).tolist() != first[2]


@pytest.mark.parametrize("seed", [-1, 1.5, "3", None, True])
def test_seed_all_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="non-negative int"):
        runtime.seed_all(seed)


def test_device(monkeypatch):
    assert runtime.device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        runtime.device("cuda")
    assert runtime.device().type in ("cpu", "mps")


REPORT_KEYS = {"python", "platform", "torch", "torchvision", "triton", "scikit-learn", "ipywidgets", "matplotlib",
               "device", "cpu threads", "thread choice", "tier", "data dir", "runs dir", "CIFAR-10 present",
               "Omniglot present"}


def test_report_keys_and_data_presence(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("COURSE_TIER", "smoke")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    info = runtime.report(verbose=False)
    assert set(info) == REPORT_KEYS
    assert info["tier"] == "smoke" and info["data dir"] == str(tmp_path)
    assert info["CIFAR-10 present"] is False and info["Omniglot present"] is False
    assert capsys.readouterr().out == ""

    runtime.report()
    out = capsys.readouterr().out
    assert "smoke" in out and "datasets missing" in out and "materialize.py" in out

    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "omniglot-py" / "images_background").mkdir(parents=True)
    info = runtime.report()
    assert info["CIFAR-10 present"] and info["Omniglot present"]
    assert "datasets missing" not in capsys.readouterr().out


def test_report_propagates_an_invalid_tier(monkeypatch):
    monkeypatch.setenv("COURSE_TIER", "turbo")
    with pytest.raises(ValueError, match="turbo"):
        runtime.report(verbose=False)


@pytest.mark.skipif(not os.environ.get("COURSE_RUNS_PROBE"), reason="run by the test below, in its own pytest session")
def test_runs_folder_probe():
    folder = runtime.runs_dir()
    assert folder.is_dir() and not any(folder.iterdir())  # fresh: nothing to resume
    (folder / "simclr-smoke.pt").write_text("a checkpoint a notebook would leave")
    with open(os.environ["COURSE_RUNS_PROBE"], "a") as fh:
        fh.write(f"{folder}\n")


def test_the_test_command_trains_in_a_fresh_runs_folder_each_time(tmp_path):
    """Two pytest sessions with COURSE_RUNS_DIR unset each get a new, empty runs folder, never the learner's."""
    import subprocess
    import sys

    probe = tmp_path / "seen.txt"
    env = {k: v for k, v in os.environ.items() if k != "COURSE_RUNS_DIR"}
    env["COURSE_RUNS_PROBE"] = str(probe)
    for _ in range(2):
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"{__file__}::test_runs_folder_probe"], cwd=Path(__file__).parents[1], env=env, check=True,
                       capture_output=True)
    seen = probe.read_text().split()
    assert len(seen) == 2 and seen[0] != seen[1]
    assert not any(Path(s).exists() for s in seen)  # removed after each session
    assert runtime.DEFAULT_RUNS_DIR not in map(Path, seen)
