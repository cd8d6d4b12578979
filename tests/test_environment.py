"""environment.yml installs this package through pip, so pyproject.toml stays the one list of dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_pip_part_installs_this_package():
    deps = _env()["dependencies"]
    pip_parts = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_parts) == 1, "environment.yml should have exactly one pip section"
    assert "pip" in deps, "environment.yml must install pip itself before its pip section"
    targets = [line for line in pip_parts[0] if re.fullmatch(r"(-e\s+)?\.(\[[\w,]+\])?", line.strip())]
    assert targets, f"the pip section must install this package ('-e .[dev]' or '.'), has {pip_parts[0]}"
    others = [line for line in pip_parts[0] if line not in targets]
    assert not others, f"list dependencies in pyproject.toml only, not in environment.yml: {others}"


def test_environment_lists_no_conda_packages_beyond_python_and_pip():
    names = [d.split("=")[0].split(">")[0].split("<")[0].strip() for d in _env()["dependencies"] if isinstance(d, str)]
    assert sorted(names) == ["pip", "python"], f"dependencies belong in pyproject.toml; environment.yml has {names}"


def test_python_ranges_agree():
    python = next(d for d in _env()["dependencies"] if isinstance(d, str) and d.startswith("python"))
    env_min = re.search(r">=\s*(3\.\d+)", python)
    project_min = re.search(r">=\s*(3\.\d+)", _pyproject()["project"]["requires-python"])
    assert env_min and project_min, "both files should state a minimum Python as '>=3.X'"
    assert env_min.group(1) == project_min.group(1), f"environment.yml wants {python}, pyproject.toml {project_min.group(0)}"


def test_requirements_admit_the_torch_on_this_disk():
    """The CI machine installs torch 2.14.1 and torchvision 0.29.1 from disk; the requirements must admit them."""
    from packaging.requirements import Requirement

    reqs = {Requirement(r).name: Requirement(r) for r in _pyproject()["project"]["dependencies"]}
    assert reqs["torch"].specifier.contains("2.14.1")
    assert reqs["torchvision"].specifier.contains("0.29.1")
