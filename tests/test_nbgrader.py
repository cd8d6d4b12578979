"""The grading round trip with the real grader: nbgrader generates the release from the course folder that
`python -m course_lib.classroom init` writes, then autogrades three submissions of each notebook:

- the untouched release scores 0, and Run All went on past every unsolved exercise (every error is in a
  cell tagged to allow it);
- the instructor's solutions score the full total, the sum of the points in the notebooks;
- in notebook 01, a submission that calls the library's own `alignment` and one that runs
  `exec(solution("uniformity"))` score 0 on those two exercises (graded mode) and full marks elsewhere;

and nbgrader never warns that a check cell's output "cannot be converted to a float" (a returned value
read as partial credit). The smoke tier, on the notebooks with the most exercises per second of running
(COURSE_NBGRADER_NOTEBOOKS chooses others; notebook 01 must be among them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nbgrader_api = pytest.importorskip("nbgrader.api", reason="nbgrader is a dev extra: pip install -e '.[dev]'")

from course_lib import classroom, ipynb  # noqa: E402
from course_lib.run_all import CONTINUE_TAG  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Notebooks graded here: the exercise-heavy ones that run in seconds (CI's budget); set the variable to grade
# others too, e.g. COURSE_NBGRADER_NOTEBOOKS="00 01 02 04 05".
GRADED = os.environ.get("COURSE_NBGRADER_NOTEBOOKS", "00 01 02 04").split()
SHORTCUTS = {  # notebook 01's exercise -> a submission that leaves the work to the library
    "alignment": "from course_lib.contrastive import losses\n\n\ndef alignment(x, y, alpha=2.0):\n"
                 "    return losses.alignment(x, y, alpha)\n",
    "uniformity": 'exec(solution("uniformity"))\n',
}


def _nbgrader(course: Path, *args: str) -> str:
    """Run an nbgrader command in `course`; its log (nbgrader logs to stderr), failing the test on error."""
    # nbgrader runs `alembic` (its database migrations) by name: it must be on PATH beside this Python.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=1500)
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{log[-4000:]}"
    return log


def _shortcut_submission(source: Path, dest: Path) -> None:
    """Notebook 01 with its worked solutions, but two exercises answered by the library."""
    nb = ipynb.read(source)
    for cell in nb["cells"]:
        exercise = ipynb.nbgrader(cell).get("grade_id")
        if ipynb.nbgrader(cell).get("solution") and exercise in SHORTCUTS:
            cell["source"] = SHORTCUTS[exercise]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(ipynb.dumps(nb), encoding="utf-8")


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory):
    """(course folder, {assignment: autograde log}) after generating and autograding every submission."""
    course = tmp_path_factory.mktemp("course")
    os.environ.setdefault("COURSE_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
    classroom.init(course, REPO / "notebooks", GRADED)
    logs = {}
    for folder in sorted((course / "source").iterdir()):
        name = folder.name
        _nbgrader(course, "generate_assignment", name, "--force")
        shutil.copytree(course / "release" / name, course / "submitted" / "untouched" / name)
        shutil.copytree(folder, course / "submitted" / "solved" / name)
        if name.startswith("01"):
            _shortcut_submission(folder / f"{name}.ipynb", course / "submitted" / "shortcut" / name / f"{name}.ipynb")
        logs[name] = _nbgrader(course, "autograde", name, "--force")
    return course, logs


def _scores(course: Path, assignment: str, student: str) -> dict[str, tuple[float, float]]:
    """{check cell: (score, max)} of one student's autograded assignment."""
    with nbgrader_api.Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        submission = gb.find_submission_notebook(assignment, assignment, student)
        return {g.name: (g.score, g.max_score) for g in submission.grades}


def _points(assignment: str) -> dict[str, int]:
    return {f"check_{k}": v for k, v in classroom.points(REPO / "notebooks")[assignment].items()}


@pytest.mark.parametrize("prefix", GRADED)
def test_untouched_release_scores_zero_and_run_all_goes_past_every_unsolved_exercise(graded_course, prefix):
    course, _ = graded_course
    name = next(p.name for p in (course / "source").iterdir() if p.name.startswith(prefix))
    scores = _scores(course, name, "untouched")
    assert scores and all(score == 0 for score, _ in scores.values()), scores
    graded_nb = ipynb.read(course / "autograded" / "untouched" / name / f"{name}.ipynb")
    stopped = [i for i, cell in enumerate(graded_nb["cells"]) if cell["cell_type"] == "code"
               and any(o["output_type"] == "error" for o in cell["outputs"])
               and CONTINUE_TAG not in cell["metadata"].get("tags", [])]
    assert not stopped, f"{name}: Run All would stop at untagged cells {stopped}"


@pytest.mark.parametrize("prefix", GRADED)
def test_solutions_score_the_full_total_without_conversion_warnings(graded_course, prefix):
    course, logs = graded_course
    name = next(p.name for p in (course / "source").iterdir() if p.name.startswith(prefix))
    scores = _scores(course, name, "solved")
    assert scores == {cell: (p, p) for cell, p in _points(name).items()}
    assert "cannot be converted to a float" not in logs[name]


def test_a_submission_that_calls_the_library_or_solution_scores_zero_on_those_exercises(graded_course):
    course, _ = graded_course
    name = next(p.name for p in (course / "source").iterdir() if p.name.startswith("01"))
    scores = _scores(course, name, "shortcut")
    want = {cell: (0 if cell.removeprefix("check_") in SHORTCUTS else p, p) for cell, p in _points(name).items()}
    assert scores == want
    graded_nb = ipynb.read(course / "autograded" / "shortcut" / name / f"{name}.ipynb")
    said = json.dumps([c["outputs"] for c in graded_nb["cells"] if c["cell_type"] == "code"])
    assert "calls the course library's own course_lib.contrastive.losses.alignment" in said
    assert "not available in graded mode" in said


def test_the_release_locks_check_cells_and_keeps_the_hint_pointer(graded_course):
    course, _ = graded_course
    name = next(p.name for p in (course / "source").iterdir() if p.name.startswith("01"))
    release = ipynb.read(course / "release" / name / f"{name}.ipynb")
    checks = [c for c in release["cells"] if ipynb.nbgrader(c).get("grade")]
    assert checks and all(c["metadata"].get("editable") is False and c["metadata"].get("deletable") is False
                          for c in checks)
    graded_nb = ipynb.read(course / "autograded" / "untouched" / name / f"{name}.ipynb")
    said = json.dumps([c["outputs"] for c in graded_nb["cells"] if c["cell_type"] == "code"])
    assert "Not implemented yet: replace this line with your code. Stuck? hint('nt_xent') gives a hint." in said
