"""pytest setup for the whole test command (unit tests and the notebooks under nbval).

Notebooks resume training runs from `COURSE_RUNS_DIR` (a learner's runs survive a restart). Tests must
train: a test run that loaded finished checkpoints would check the accuracy bands against an old model,
and a regression in the training code would pass. So unless COURSE_RUNS_DIR is set on purpose, each
test session points it at a fresh temporary folder (the notebooks' kernels inherit it) and deletes it
afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_FRESH: list[str] = []


def pytest_configure(config):
    if os.environ.get("COURSE_RUNS_DIR", "").strip():
        return
    folder = tempfile.mkdtemp(prefix="course-runs-")
    os.environ["COURSE_RUNS_DIR"] = folder
    _FRESH.append(folder)


def pytest_report_header(config):
    folder = os.environ.get("COURSE_RUNS_DIR")
    if _FRESH:
        return f"training runs: a fresh folder, {folder} (COURSE_RUNS_DIR unset: every notebook trains)"
    return f"training runs: COURSE_RUNS_DIR={folder} (set by you: checkpoints there are resumed)"


def pytest_unconfigure(config):
    for folder in _FRESH:
        shutil.rmtree(folder, ignore_errors=True)
