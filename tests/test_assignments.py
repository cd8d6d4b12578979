"""The instructor -> student pipeline: stubs, metadata, worked solutions, no leaked solutions, no drift,
failing checks, and the command line from an installed (non-editable) package."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from course_lib import assignments, checkpoint, ipynb
from course_lib.assignments import BEGIN, END, AssignmentError
from course_lib.run_all import CONTINUE_TAG, dependent_cells
from course_lib.checks import REGISTRY, CheckFailed
from notebook_code import namespace_before

REPO = Path(__file__).resolve().parents[1]
SOURCE, EXERCISES = REPO / "notebooks", REPO / "notebooks" / "exercises"
SOLUTIONS = REPO / "course_lib" / "checks" / "solutions.json"
NOTEBOOKS = sorted(SOURCE.glob("*.ipynb"))


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


def _course(root: Path) -> Path:
    """A one-notebook course in root/notebooks; returns that folder."""
    src = root / "notebooks"
    src.mkdir(parents=True)
    (src / "a.ipynb").write_text(ipynb.dumps(_nb(_cell(SOLUTION, solution=True, grade_id="double"))))
    return src


def test_build_writes_removes_stale_and_detects_drift(tmp_path):
    src = _course(tmp_path)
    dest, sols = src / "exercises", tmp_path / "solutions.json"
    dest.mkdir()
    stale = assignments.student_notebook(_nb(_cell("print(1)")), "gone.ipynb")  # its instructor version is gone
    (dest / "gone.ipynb").write_text(ipynb.dumps(stale))
    (dest / "mine.ipynb").write_text("{}")  # an instructor's own notebook in the folder: never deleted
    assert [p.name for p in assignments.build(src, dest, sols)] == ["a.ipynb", "solutions.json"]
    assert not (dest / "gone.ipynb").exists() and (dest / "mine.ipynb").read_text() == "{}"
    (dest / "mine.ipynb").unlink()
    assert assignments.drift(src, dest, sols) == []
    (dest / "a.ipynb").write_text((dest / "a.ipynb").read_text().replace("NotImplementedError", "ValueError"))
    assert assignments.drift(src, dest, sols) == ["a.ipynb"]
    cli = ["--source", str(src), "--out", str(dest), "--solutions", str(sols)]
    assert assignments.main(["check", *cli]) == 1
    assert assignments.main(["build", *cli]) == 0
    assert assignments.main(["check", *cli]) == 0


def test_build_refuses_to_write_over_its_source(tmp_path):
    src = _course(tmp_path)
    before = (src / "a.ipynb").read_text()
    with pytest.raises(AssignmentError, match="overwrite the instructor notebooks"):
        assignments.build(src, src / ".." / src.name)
    assert (src / "a.ipynb").read_text() == before


def test_worked_solutions_are_the_solution_cells_without_their_markers(tmp_path):
    src = _course(tmp_path)
    worked = json.loads(assignments.solutions_json(src))
    assert worked == {"double": 'def double(x):\n    """Twice x."""\n    y = x + x\n    return y\n'}
    markdown = _cell(f"Why?\n{BEGIN}\nBecause.\n{END}", "markdown", solution=True, grade_id="why")
    assert assignments.worked_solutions(_nb(markdown)) == {}  # a written answer is not code to print


def test_a_stale_or_missing_solutions_file_is_drift(tmp_path, capsys):
    src = _course(tmp_path)
    dest, sols = src / "exercises", tmp_path / "solutions.json"
    assignments.build(src, dest, sols)
    sols.write_text(sols.read_text().replace("x + x", "2 * x"))
    assert assignments.drift(src, dest, sols) == ["solutions.json"]
    sols.unlink()
    assert assignments.drift(src, dest, sols) == ["solutions.json"]
    assert assignments.main(["check", "--source", str(src), "--solutions", str(sols)]) == 1
    assert "out of date: solutions.json" in capsys.readouterr().out


def test_an_exercise_with_two_solution_cells_is_rejected(tmp_path):
    src = _course(tmp_path)
    (src / "b.ipynb").write_text((src / "a.ipynb").read_text())
    with pytest.raises(AssignmentError, match="'double' has solution cells in two notebooks"):
        assignments.solutions_json(src)
    twice = _nb(_cell(SOLUTION, solution=True, grade_id="double"), _cell(SOLUTION, solution=True, grade_id="double"))
    with pytest.raises(AssignmentError, match="a second solution cell for exercise 'double'"):
        assignments.worked_solutions(twice, "nb.ipynb")


def test_defaults_are_relative_to_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert assignments.main(["build"]) == 2
    assert "run from the repository root, or pass --source DIR" in capsys.readouterr().err
    _course(tmp_path)
    assert assignments.main(["build"]) == 0  # a course folder that is not a checkout of the kit
    assert "worked solutions file is left alone" in capsys.readouterr().out
    assert (tmp_path / "notebooks" / "exercises" / "a.ipynb").exists() and not list(tmp_path.rglob("*.json"))
    (tmp_path / "course_lib" / "checks").mkdir(parents=True)
    assert assignments.main(["build"]) == 0  # a checkout: the solutions file is written where it ships
    assert "double" in json.loads((tmp_path / "course_lib" / "checks" / "solutions.json").read_text())
    assert assignments.main(["check"]) == 0


def test_strip_clears_outputs_in_place(tmp_path):
    path = tmp_path / "a.ipynb"
    path.write_text(ipynb.dumps(_nb(_cell("print(1)"))))
    assert assignments.strip_outputs(tmp_path) == [path]
    assert json.loads(path.read_text())["cells"][0]["outputs"] == []
    assert assignments.strip_outputs(tmp_path) == []


def test_strip_rewrites_atomically_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "a.ipynb"
    original = ipynb.dumps(_nb(_cell("print(1)")))
    path.write_text(original)
    path.chmod(0o640)

    def killed(src, dst):
        raise KeyboardInterrupt  # the run is stopped just before the rename

    monkeypatch.setattr(checkpoint.os, "replace", killed)  # the one atomic write, which assignments uses
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


def test_committed_student_versions_and_solutions_equal_a_fresh_build():
    stale = assignments.drift(SOURCE, EXERCISES, SOLUTIONS)
    assert not stale, f"run `python -m course_lib.assignments build`: {stale} differ from a fresh build"


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory) -> Path:
    """Student versions built now from the instructor notebooks, in a temporary folder."""
    out = tmp_path_factory.mktemp("exercises")
    assignments.build(SOURCE, out)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_instructor_notebook_is_committed_without_outputs(path):
    nb = ipynb.read(path)
    with_outputs = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])]
    assert not with_outputs, f"{path.name}: cells {with_outputs} have outputs; run `python -m course_lib.assignments strip`"


def _exercises(nb: dict) -> list[tuple[int, str]]:
    return [(i, c["metadata"]["nbgrader"]["grade_id"]) for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code" and c.get("metadata", {}).get("nbgrader", {}).get("solution")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_are_registered_and_followed_by_their_check(path):
    nb = ipynb.read(path)
    for index, name in _exercises(nb):
        assert name in REGISTRY, f"{path.name} cell {index}: exercise {name!r} is not registered in course_lib.checks"
        nxt = nb["cells"][index + 1]
        meta = nxt.get("metadata", {}).get("nbgrader", {})
        assert meta.get("grade") and meta.get("locked") and meta.get("grade_id") == f"check_{name}", (
            f"{path.name} cell {index + 1} should be the locked, graded check cell of {name!r}")
        assert f"check_{name}(" in ipynb.source(nxt), f"{path.name} cell {index + 1} should call check_{name}(...)"


def _solution_lines(nb: dict) -> tuple[set[str], str]:
    """Lines inside solution blocks that appear nowhere else in the instructor notebook, and that elsewhere."""
    inside, outside = set(), []
    for cell in nb["cells"]:
        lines = ipynb.source(cell).split("\n")
        blocks = assignments.solution_blocks("\n".join(lines))
        marked = {k for b, e in blocks for k in range(b, e + 1)}
        inside |= {lines[k].strip() for k in marked if len(lines[k].strip()) > 3}
        outside += [line for k, line in enumerate(lines) if k not in marked]
    rest = "\n".join(outside)
    return {line for line in inside - {BEGIN, END} if line not in rest}, rest


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_solution_text_survives_in_the_student_version(path, fresh_build):
    secret, _ = _solution_lines(ipynb.read(path))
    student = (fresh_build / path.name).read_text()
    leaked = sorted(line for line in secret if json.dumps(line)[1:-1] in student)
    assert BEGIN not in student and END not in student
    assert not leaked, f"{path.name}: solution lines survive in the student version: {leaked[:5]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_exercise_cells_are_locked_and_let_run_all_continue(path, fresh_build):
    """Check cells read-only and undeletable, solution cells undeletable; those and the cells that use what
    they define tagged so that JupyterLab's Run All goes past an unsolved exercise; nothing else."""
    cells = ipynb.read(fresh_build / path.name)["cells"]
    dependents = dependent_cells(ipynb.read(path)["cells"], cells)
    for index, cell in enumerate(cells):
        meta, where = cell["metadata"], f"{path.name}, cell {index}"
        grading = meta.get("nbgrader", {})
        assert (CONTINUE_TAG in meta.get("tags", [])) == (index in dependents), where
        if grading.get("solution"):
            assert meta.get("deletable") is False and "editable" not in meta, where
        elif grading.get("grade"):
            assert meta.get("deletable") is False and meta.get("editable") is False, where
        else:
            assert "deletable" not in meta and "editable" not in meta, where


def _imported(cells: list[dict]) -> set[str]:
    """Dotted names the code cells make available: "pkg.mod" for a module, "pkg.mod.name" for a name."""
    found = set()
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse(ipynb.source(cell))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_exercise_reference_is_imported_before_its_exercise(path, fresh_build):
    """A learner should not be one attribute away from the answer: before an exercise, the student version
    imports neither the library function its check compares with nor that function's module."""
    student = ipynb.read(fresh_build / path.name)
    for index, name in _exercises(student):
        reference = REGISTRY[name].reference
        module, qualname = getattr(reference, "__module__", ""), getattr(reference, "__qualname__", "<lambda>")
        if not module.startswith("course_lib.") or module.startswith("course_lib.checks") or "<" in qualname:
            continue  # a reference written inside the checks: nothing a notebook would import
        before = _imported(student["cells"][:index])
        leaks = {module, f"{module}.{qualname}", f"{module}.*"} & before
        assert not leaks, f"{path.name}: {leaks} imported before exercise {name!r}, whose check compares with it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_stub_keeps_a_docstring_with_shapes_or_a_format(path, fresh_build):
    """What the learner must write is stated in the stub: a function or class keeps its docstring (with the
    shapes of tensors, written as "(...)"), and an answer cell keeps the comment that shows the format."""
    student = ipynb.read(fresh_build / path.name)
    for index, name in _exercises(student):
        text = ipynb.source(student["cells"][index])
        definitions = [n for n in ast.parse(text).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        if definitions:
            doc = ast.get_docstring(definitions[-1]) or ""
            assert "(" in doc, f"{path.name} exercise {name!r}: the stub's docstring should state the shapes: {doc!r}"
        else:
            assert text.lstrip().startswith("#") and "=" in text.split("\n")[0], (
                f"{path.name} exercise {name!r}: an answer cell should open with a comment showing the format")


LESSONS = [p for p in NOTEBOOKS if p.name[:2] != "00"]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_lesson_ends_with_summary_next_reading_and_a_checked_self_check(path):
    """What a course has around its lessons, in this order, and a learner-facing text free of the project's
    process (its issues, trackers or work sessions)."""
    nb = ipynb.read(path)
    markdown = "\n".join(ipynb.source(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    where = [markdown.find(h) for h in ("## Summary", "**Next:**", "## Further reading", "## Self-check")]
    assert -1 not in where and where == sorted(where), f"{path.name}: headings found at {where}"
    number = int(path.name[:2])
    if number < 8:   # every lesson but the last names the next one
        pointer = markdown[where[1]:where[2]]
        assert f"{number + 1:02d}" in pointer or f"notebook {number + 1:02d}" in pointer, pointer
    grade_ids = [ipynb.nbgrader(c).get("grade_id") for c in nb["cells"]]
    name = f"self_check_{number:02d}"
    assert name in grade_ids and grade_ids.index(f"check_{name}") == grade_ids.index(name) + 1
    assert not re.search(r"\bissues?\b|tracker|\bsessions?\b", markdown.lower()), f"{path.name} speaks of the process"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_student_check_fails_with_its_learner_facing_message(path, fresh_build):
    student = ipynb.read(fresh_build / path.name)
    for index, name in _exercises(student):
        namespace = namespace_before(student, index)
        try:
            exec(ipynb.source(student["cells"][index]), namespace)
        except NotImplementedError:
            pass  # a stub at the top level of the cell raises at once: that is the learner's prompt
        else:
            with pytest.raises(CheckFailed) as failure:
                exec(ipynb.source(student["cells"][index + 1]), namespace)
            message = str(failure.value)
            assert "Not implemented yet" in message and f"hint('{name}')" in message, (
                f"{path.name} exercise {name!r}: the student check should say it is not implemented yet, said: {message}")


# --- the instructor tool from an installed package ----------------------------------------------


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def _run(cmd: list, cwd: Path) -> str:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_installed_package_builds_student_versions_outside_the_repository(tmp_path):
    """A non-editable install (offline, reusing this environment's torch) builds from any folder, writes
    only where it is told, and ships the worked solutions as package data."""
    started = time.perf_counter()
    src = tmp_path / "src"  # a copy, so that building the wheel writes nothing into the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((REPO / name).read_bytes())
    _copy_package(REPO / "course_lib", src / "course_lib")
    venv = tmp_path / "venv"
    # This environment's packages (torch, pip, setuptools) come through a .pth line in the new venv rather
    # than --system-site-packages, which would reach only the base interpreter's (here, as in CI, the
    # dependencies live in a venv). A .pth path line adds the folder but runs none of the .pth files in
    # it, so this environment's editable install of the kit stays out of the way.
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    outer = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "outer-environment.pth").write_text("".join(f"{path}\n" for path in outer))
    # --ignore-installed: pip must not touch the editable install it can now see.
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
          "--ignore-installed", src], tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    installed = _run([python, "-c", "import course_lib; print(course_lib.__file__)"], outside)
    assert Path(installed.strip()).is_relative_to(site), installed
    before = _tree(site)

    out = _run([python, "-m", "course_lib.assignments", "build", "--source", SOURCE, "--out", tmp_path / "ex"], outside)
    assert "worked solutions file is left alone" in out
    student = sorted(p.name for p in (tmp_path / "ex").glob("*.ipynb"))
    assert student == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        secret, _ = _solution_lines(ipynb.read(path))
        text = (tmp_path / "ex" / path.name).read_text()
        assert BEGIN not in text and not [line for line in secret if json.dumps(line)[1:-1] in text], path.name
    printed = _run([python, "-c", "from course_lib.checks import solution; solution('nt_xent')"], outside)
    assert printed.startswith("def nt_xent(z, temperature=0.5):")
    assert _tree(site) == before, "the installed tool wrote into site-packages"
    assert list(outside.iterdir()) == []
    print(f"install and build from a non-editable install: {time.perf_counter() - started:.1f} s")


def _copy_package(src: Path, dest: Path) -> None:
    """The package's files without caches or build leftovers."""
    for path in src.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
