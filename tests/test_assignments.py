"""The instructor -> student pipeline: stubs, metadata, no leaked solutions, no drift, failing checks."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from course_lib import assignments
from course_lib.assignments import BEGIN, END, AssignmentError
from course_lib.checks import REGISTRY, CheckFailed

NOTEBOOKS = sorted(assignments.SOURCE.glob("*.ipynb"))


def _cell(source: str, cell_type: str = "code", **nbgrader) -> dict:
    cell = {"cell_type": cell_type, "metadata": {"nbgrader": nbgrader} if nbgrader else {}, "source": source}
    if cell_type == "code":
        cell |= {"outputs": [{"output_type": "stream", "name": "stdout", "text": "secret output"}], "execution_count": 3}
    return cell


def _nb(*cells: dict) -> dict:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


SOLUTION = f"""def double(x):
    \"\"\"Twice x.\"\"\"
    {BEGIN}
    y = x + x
    return y
    {END}
"""


def test_stub_replaces_the_block_at_its_indentation():
    nb = assignments.student_notebook(_nb(_cell(SOLUTION, solution=True, grade_id="double")))
    text = nb["cells"][0]["source"]
    assert "y = x + x" not in text and BEGIN not in text
    assert '    raise NotImplementedError("Exercise \'double\'' in text
    assert "hint('double')" in text
    assert '"""Twice x."""' in text  # what lies outside the markers stays
    compile(text, "<stub>", "exec")
    assert nb["cells"][0]["outputs"] == [] and nb["cells"][0]["execution_count"] is None


def test_markdown_solution_is_replaced():
    nb = assignments.student_notebook(_nb(_cell(f"Why?\n{BEGIN}\nBecause.\n{END}", "markdown", solution=True, grade_id="why")))
    assert nb["cells"][0]["source"] == f"Why?\n{assignments.MARKDOWN_STUB}"


@pytest.mark.parametrize("cell, message", [
    (_cell(SOLUTION), "no nbgrader metadata"),
    (_cell(SOLUTION, solution=True), "without an nbgrader grade_id"),
    (_cell("x = 1", solution=True, grade_id="x"), "without '### BEGIN SOLUTION' markers"),
    (_cell(f"{BEGIN}\nx = 1\n", solution=True, grade_id="x"), "never closed"),
    (_cell(f"x = 1\n{END}\n", solution=True, grade_id="x"), "without a matching"),
    (_cell(f"{BEGIN}\n{BEGIN}\n{END}\n", solution=True, grade_id="x"), "nested"),
])
def test_inconsistent_markers_are_rejected(cell, message):
    with pytest.raises(AssignmentError, match=message):
        assignments.student_notebook(_nb(cell), "nb.ipynb")


def test_build_writes_removes_stale_and_detects_drift(tmp_path):
    src, dest = tmp_path / "notebooks", tmp_path / "notebooks" / "exercises"
    src.mkdir()
    (src / "a.ipynb").write_text(assignments.dumps(_nb(_cell(SOLUTION, solution=True, grade_id="double"))))
    dest.mkdir()
    (dest / "stale.ipynb").write_text("{}")
    assert [p.name for p in assignments.build(src, dest)] == ["a.ipynb"]
    assert not (dest / "stale.ipynb").exists()
    assert assignments.drift(src, dest) == []
    (dest / "a.ipynb").write_text((dest / "a.ipynb").read_text().replace("NotImplementedError", "ValueError"))
    assert assignments.drift(src, dest) == ["a.ipynb"]
    assert assignments.main(["check", "--source", str(src), "--dest", str(dest)]) == 1
    assert assignments.main(["build", "--source", str(src), "--dest", str(dest)]) == 0
    assert assignments.main(["check", "--source", str(src), "--dest", str(dest)]) == 0


def test_strip_clears_outputs_in_place(tmp_path):
    path = tmp_path / "a.ipynb"
    path.write_text(assignments.dumps(_nb(_cell("print(1)"))))
    assert assignments.strip_outputs(tmp_path) == [path]
    assert json.loads(path.read_text())["cells"][0]["outputs"] == []
    assert assignments.strip_outputs(tmp_path) == []


def test_strip_rewrites_atomically_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "a.ipynb"
    original = assignments.dumps(_nb(_cell("print(1)")))
    path.write_text(original)
    path.chmod(0o640)

    def killed(src, dst):
        raise KeyboardInterrupt  # the run is stopped just before the rename

    monkeypatch.setattr(assignments.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        assignments.strip_outputs(tmp_path)
    assert path.read_text() == original and [p.name for p in tmp_path.iterdir()] == ["a.ipynb"]
    monkeypatch.undo()
    assert assignments.strip_outputs(tmp_path) == [path]
    assert (path.stat().st_mode & 0o777) == 0o640 and [p.name for p in tmp_path.iterdir()] == ["a.ipynb"]


def test_student_version_drops_execution_timings():
    cell = _cell(SOLUTION, solution=True, grade_id="double")
    cell["metadata"]["execution"] = {"iopub.status.busy": "2025-01-01T00:00:00"}
    assert "execution" not in assignments.student_notebook(_nb(cell))["cells"][0]["metadata"]


# --- the real course notebooks ------------------------------------------------------------------


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2, "notebooks/ should hold the course"


def test_committed_student_versions_equal_a_fresh_build():
    stale = assignments.drift()
    assert not stale, f"run `python -m course_lib.assignments build`: {stale} differ from a fresh build"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_instructor_notebook_is_committed_without_outputs(path):
    nb = assignments.read(path)
    with_outputs = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])]
    assert not with_outputs, f"{path.name}: cells {with_outputs} have outputs; run `python -m course_lib.assignments strip`"


def _exercises(nb: dict) -> list[tuple[int, str]]:
    return [(i, c["metadata"]["nbgrader"]["grade_id"]) for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code" and c.get("metadata", {}).get("nbgrader", {}).get("solution")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_are_registered_and_followed_by_their_check(path):
    nb = assignments.read(path)
    for index, name in _exercises(nb):
        assert name in REGISTRY, f"{path.name} cell {index}: exercise {name!r} is not registered in course_lib.checks"
        nxt = nb["cells"][index + 1]
        meta = nxt.get("metadata", {}).get("nbgrader", {})
        assert meta.get("grade") and meta.get("locked") and meta.get("grade_id") == f"check_{name}", (
            f"{path.name} cell {index + 1} should be the locked, graded check cell of {name!r}")
        assert f"check_{name}(" in assignments._source(nxt), f"{path.name} cell {index + 1} should call check_{name}(...)"


def _solution_lines(nb: dict) -> tuple[set[str], str]:
    """Lines inside solution blocks that appear nowhere else in the instructor notebook, and that elsewhere."""
    inside, outside = set(), []
    for cell in nb["cells"]:
        lines = assignments._source(cell).split("\n")
        blocks = assignments.solution_blocks("\n".join(lines))
        marked = {k for b, e in blocks for k in range(b, e + 1)}
        inside |= {lines[k].strip() for k in marked if len(lines[k].strip()) > 3}
        outside += [line for k, line in enumerate(lines) if k not in marked]
    rest = "\n".join(outside)
    return {line for line in inside - {BEGIN, END} if line not in rest}, rest


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_solution_text_survives_in_the_student_version(path):
    secret, _ = _solution_lines(assignments.read(path))
    student = (assignments.DEST / path.name).read_text()
    leaked = sorted(line for line in secret if json.dumps(line)[1:-1] in student)
    assert BEGIN not in student and END not in student
    assert not leaked, f"{path.name}: solution lines survive in the student version: {leaked[:5]}"


def _imports_before(nb: dict, index: int) -> str:
    """The import statements of every code cell before `index` (enough to define the learner's function)."""
    lines = []
    for cell in nb["cells"][:index]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse(assignments._source(cell))
        except SyntaxError:
            continue
        lines += [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_student_check_fails_with_its_learner_facing_message(path):
    student = assignments.read(assignments.DEST / path.name)
    for index, name in _exercises(student):
        namespace: dict = {}
        exec(_imports_before(student, index), namespace)
        exec("from course_lib.checks import *", namespace)
        try:
            exec(assignments._source(student["cells"][index]), namespace)
        except NotImplementedError:
            pass  # a stub at the top level of the cell raises at once: that is the learner's prompt
        else:
            with pytest.raises(CheckFailed) as failure:
                exec(assignments._source(student["cells"][index + 1]), namespace)
            message = str(failure.value)
            assert "Not implemented yet" in message and f"hint('{name}')" in message, (
                f"{path.name} exercise {name!r}: the student check should say it is not implemented yet, said: {message}")
