"""The nbgrader course folder that `python -m course_lib.classroom init` writes, and the points table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib import classroom, ipynb
from course_lib.assignments import AssignmentError, student_notebook
from course_lib.run_all import CONTINUE_TAG, dependent_cells

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "notebooks"


def test_init_writes_a_config_and_one_tagged_assignment_per_notebook(tmp_path):
    written = classroom.init(tmp_path, SOURCE, ["00", "01"])
    assert (tmp_path / "nbgrader_config.py") in written
    assert sorted(p.name for p in (tmp_path / "source").iterdir()) == ["00_start_here", "01_contrastive_loss_math"]
    folder = tmp_path / "source" / "01_contrastive_loss_math"
    assert (folder / "GLOSSARY.md").read_text() == (SOURCE / "GLOSSARY.md").read_text()
    nb, original = ipynb.read(folder / f"{folder.name}.ipynb"), ipynb.read(SOURCE / f"{folder.name}.ipynb")
    dependents = dependent_cells(original["cells"], student_notebook(original)["cells"])
    assert len(dependents) > 2 * len(classroom.points(SOURCE)[folder.name])  # the exercises and their users
    for index, (cell, before) in enumerate(zip(nb["cells"], original["cells"], strict=True)):
        assert (CONTINUE_TAG in cell["metadata"].get("tags", [])) == (index in dependents)
        assert cell["source"] == before["source"]  # the solutions stay: nbgrader strips them on release


def test_init_names_the_notebooks_when_a_prefix_matches_none(tmp_path):
    with pytest.raises(AssignmentError, match="no notebook in .* starts with 09; the notebooks are 00_start_here"):
        classroom.init(tmp_path, SOURCE, ["09"])


def test_the_config_grades_in_graded_mode_in_the_smoke_tier_with_a_stub_that_says_what_to_do(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text(classroom.CONFIG)
    code = ("import os; from traitlets.config import Config; c = Config(); "
            "exec(open('nbgrader_config.py').read(), {'get_config': lambda: c}); "
            "print(os.environ['COURSE_GRADED'], os.environ['COURSE_TIER'], c.ClearSolutions.code_stub['python'])")
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_GRADED", "COURSE_TIER")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == '1 smoke raise NotImplementedError("replace this line with your code")'


def test_every_check_cell_is_worth_what_its_exercise_takes():
    table = classroom.points(SOURCE)
    assert list(table) == [p.stem for p in sorted(SOURCE.glob("*.ipynb"))]
    for notebook, worth in table.items():
        for exercise, points in worth.items():
            assert isinstance(points, int) and 1 <= points <= 4, (notebook, exercise, points)
            if exercise.startswith("self_check_"):
                assert points == 2, (notebook, exercise)
    # The largest pieces of work outweigh single steps.
    flat = {e: p for worth in table.values() for e, p in worth.items()}
    assert min(flat["inner_loop"], flat["simclr_step"], flat["catches"]) > max(flat["batched_flip"],
                                                                              flat["projection_head"])


def test_instructors_guide_shows_the_points_of_the_notebooks():
    guide = (REPO / "INSTRUCTORS.md").read_text()
    shown = guide.split("<!-- points -->\n")[1].split("<!-- /points -->")[0]
    assert shown == classroom.points_table(SOURCE), "run `python -m course_lib.classroom points` and paste it"
