"""Student versions of the course notebooks: solutions out, stubs and checks in.

The instructor notebooks in notebooks/ hold the solutions between nbgrader's own markers,

    def nt_xent(z, temperature):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

in cells whose metadata says `{"nbgrader": {"solution": true, "grade_id": "<exercise>", ...}}`, so nbgrader
can use the notebooks as they are, without being a dependency of the kit. `build` writes a student version
of each notebook, each solution replaced by a stub that raises NotImplementedError and points to
`hint("<exercise>")` (the check cells stay, locked, so a learner or a grading server runs them; exercise
cells and the cells that use them are tagged so that Run All continues past an unsolved one: run_all.py),
and the
worked solutions file that `solution(name)` prints: {exercise: its solution cell without the two marker
lines}, as JSON. The notebooks are the one source of both. The course's markdown pages beside the
notebooks (the glossary) are copied unchanged, so that links to them work from either folder.

Run from the repository root, where the defaults are the paths of a checkout (relative to the current
folder, never to this file, so an installed package writes nothing into site-packages):

    python -m course_lib.assignments build     # notebooks/ -> notebooks/exercises/ and course_lib/checks/solutions.json
    python -m course_lib.assignments check     # exit 1 if the committed student versions or solutions drifted
    python -m course_lib.assignments strip     # clear outputs of the instructor notebooks before a commit
    python -m course_lib.assignments build --source DIR --out DIR [--solutions PATH]   # anywhere else
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from course_lib.ipynb import clear_outputs, dumps, nbgrader, read, source, write
from course_lib.run_all import continue_past

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MARKDOWN_STUB = "_Write your answer here._"
GENERATED = "course_lib_student_version"  # notebook metadata key: this file was written by `build`
# Defaults of the command line, relative to the current folder (a repository checkout's root).
SOURCE = Path("notebooks")
SOLUTIONS = Path("course_lib", "checks", "solutions.json")


class AssignmentError(ValueError):
    """A notebook's solution markers or nbgrader metadata are inconsistent."""


def code_stub(exercise: str) -> str:
    return (f'raise NotImplementedError("Exercise \'{exercise}\': replace this line with your code. '
            f'Stuck? Run hint(\'{exercise}\'); solution(\'{exercise}\') shows one way to do it.")')


def solution_blocks(text: str) -> list[tuple[int, int]]:
    """(begin, end) line indices of each marked solution block in `text`; raises on unbalanced markers."""
    blocks, start = [], None
    for i, line in enumerate(text.split("\n")):
        if line.strip() == BEGIN:
            if start is not None:
                raise AssignmentError(f"nested {BEGIN!r} at line {i + 1}; close the previous block first.")
            start = i
        elif line.strip() == END:
            if start is None:
                raise AssignmentError(f"{END!r} at line {i + 1} without a matching {BEGIN!r}.")
            blocks.append((start, i))
            start = None
    if start is not None:
        raise AssignmentError(f"{BEGIN!r} at line {start + 1} is never closed with {END!r}.")
    return blocks


def strip_solution(text: str, exercise: str, markdown: bool = False) -> str:
    """`text` with every marked block replaced by one stub line at the block's indentation."""
    lines = text.split("\n")
    out, last = [], 0
    for begin, end in solution_blocks(text):
        indent = re.match(r"\s*", lines[begin]).group(0)
        out += lines[last:begin] + [indent + (MARKDOWN_STUB if markdown else code_stub(exercise))]
        last = end + 1
    return "\n".join(out + lines[last:])


def _exercise_of(cell: dict, where: str) -> str | None:
    """The exercise a solution cell answers (its grade_id), None for any other cell; raises when the
    markers and the nbgrader metadata disagree."""
    text, meta = source(cell), nbgrader(cell)
    has_markers = bool(solution_blocks(text)) if (BEGIN in text or END in text) else False
    if has_markers and not meta.get("solution"):
        raise AssignmentError(f"{where} has solution markers but no nbgrader metadata with solution: true.")
    if not meta.get("solution"):
        return None
    exercise = meta.get("grade_id")
    if not exercise:
        raise AssignmentError(f"{where} is a solution cell without an nbgrader grade_id (the exercise name).")
    if not has_markers:
        raise AssignmentError(f"{where} (exercise {exercise!r}) is a solution cell without {BEGIN!r} markers.")
    return exercise


def lock(cell: dict) -> None:
    """Lock a cell as nbgrader's release does: a check cell can be neither edited nor deleted, a solution
    cell not deleted (JupyterLab honours both keys)."""
    meta = nbgrader(cell)
    if meta.get("grade") and not meta.get("solution"):
        cell["metadata"].update(editable=False, deletable=False)
    elif meta.get("solution"):
        cell["metadata"]["deletable"] = False


def student_notebook(nb: dict, name: str = "notebook") -> dict:
    """A student version of notebook `nb` (a parsed .ipynb): solutions stubbed, outputs cleared, exercise
    cells locked and tagged so that Run All continues past an unsolved one."""
    student = clear_outputs(nb)
    for index, cell in enumerate(student["cells"]):
        exercise = _exercise_of(cell, f"{name}, cell {index}")
        if exercise is not None:
            cell["source"] = strip_solution(source(cell), exercise, markdown=cell["cell_type"] == "markdown")
        lock(cell)
    continue_past(student, nb, student)
    student.setdefault("metadata", {})[GENERATED] = {"source": name}
    return student


def worked_solutions(nb: dict, name: str = "notebook") -> dict[str, str]:
    """{exercise: source} of each code solution cell of `nb`, without its marker lines, in cell order."""
    found = {}
    for index, cell in enumerate(nb["cells"]):
        exercise = _exercise_of(cell, f"{name}, cell {index}")
        if exercise is None or cell["cell_type"] != "code":
            continue
        if exercise in found:
            raise AssignmentError(f"{name}, cell {index}: a second solution cell for exercise {exercise!r}; "
                                  "give each exercise one solution cell.")
        lines = source(cell).split("\n")
        found[exercise] = "\n".join(line for line in lines if line.strip() not in (BEGIN, END))
    return found


def solutions_json(source: Path) -> str:
    """The worked solutions of every notebook in `source` as the text of solutions.json."""
    found: dict[str, str] = {}
    for path in notebooks(source):
        for exercise, code in worked_solutions(read(path), path.name).items():
            if exercise in found:
                raise AssignmentError(f"exercise {exercise!r} has solution cells in two notebooks ({path.name} "
                                      "and an earlier one); exercise names must be unique across the course.")
            found[exercise] = code
    return json.dumps(found, indent=1, ensure_ascii=False) + "\n"


def notebooks(source: Path) -> list[Path]:
    """The instructor notebooks in folder `source`, sorted; a clear error when there are none."""
    source = Path(source)
    found = sorted(source.glob("*.ipynb")) if source.is_dir() else []
    if not found:
        raise AssignmentError(f"no instructor notebooks (*.ipynb) in {source.resolve()}: run from the repository "
                              "root, or pass --source DIR, the folder that holds them.")
    return found


def pages(source: Path) -> dict[str, str]:
    """{name: text} of the course's markdown pages beside the notebooks (the glossary), copied as they are
    so that the notebooks' links to them work in the student folder too."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(source).glob("*.md"))}


def _generated(path: Path) -> bool:
    """Whether `path` is a student version that `build` wrote (it carries the metadata mark below)."""
    try:
        return GENERATED in read(path).get("metadata", {})
    except (OSError, ValueError):
        return False


def build(source: Path, dest: Path, solutions: Path | None = None) -> list[Path]:
    """Write a student version of every notebook in `source` to `dest` and, when `solutions` is given, the
    worked solutions file there. Returns the paths written. Student versions in `dest` whose instructor
    notebook is gone are removed; any other notebook there is left alone."""
    if Path(dest).resolve() == Path(source).resolve():
        raise AssignmentError(f"--out {dest} is the source folder: the student versions would overwrite the "
                              "instructor notebooks, the only copy of the solutions. Choose another --out.")
    student = {path.name: dumps(student_notebook(read(path), path.name)) for path in notebooks(source)}
    student |= pages(source)
    worked = solutions_json(source) if solutions is not None else None  # every notebook is valid before a write
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in student.items():
        write(dest / name, text)
        written.append(dest / name)
    for stale in set(dest.glob("*.ipynb")) - set(written):
        if _generated(stale):
            stale.unlink()
    if worked is not None:
        write(Path(solutions), worked)  # atomic_write makes the folder if needed
        written.append(Path(solutions))
    return written


def drift(source: Path, dest: Path, solutions: Path | None = None) -> list[str]:
    """Names of student notebooks in `dest` that differ from (or are missing in) a fresh build, and the
    solutions file's name when it is given and differs from the notebooks' solution cells."""
    wanted = {p.name: dumps(student_notebook(read(p), p.name)) for p in notebooks(source)} | pages(source)
    have = {p.name: p.read_text(encoding="utf-8") for p in [*Path(dest).glob("*.ipynb"), *Path(dest).glob("*.md")]}
    stale = sorted(n for n in wanted.keys() | have.keys() if wanted.get(n) != have.get(n))
    if solutions is not None:
        current = Path(solutions).read_text(encoding="utf-8") if Path(solutions).is_file() else None
        if current != solutions_json(source):
            stale.append(Path(solutions).name)
    return stale


def strip_outputs(source: Path) -> list[Path]:
    """Clear outputs of the instructor notebooks in place (they are committed without outputs)."""
    changed = []
    for path in notebooks(source):
        before = path.read_text(encoding="utf-8")
        after = dumps(clear_outputs(json.loads(before)))
        if after != before:
            write(path, after)
            changed.append(path)
    return changed


def _solutions_path(args: argparse.Namespace) -> Path | None:
    """--solutions, else the checkout's course_lib/checks/solutions.json when that folder is here, else None."""
    if args.solutions is not None:
        return args.solutions
    if SOLUTIONS.parent.is_dir():
        return SOLUTIONS
    print(f"no {SOLUTIONS.parent} folder here: the worked solutions file is left alone (pass --solutions PATH to "
          "write or check one).")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.assignments", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "check", "strip"])
    parser.add_argument("--source", type=Path, default=SOURCE, help="instructor notebooks (default: ./notebooks)")
    parser.add_argument("--out", type=Path, help="student versions (default: SOURCE/exercises)")
    parser.add_argument("--solutions", type=Path, help=f"worked solutions file (default: ./{SOLUTIONS}, if its "
                        "folder exists)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else args.source / "exercises"
    try:
        if args.command == "strip":
            for path in strip_outputs(args.source):
                print(f"cleared outputs of {path}")
            return 0
        solutions = _solutions_path(args)
        if args.command == "build":
            for path in build(args.source, out, solutions):
                print(f"wrote {path}")
            return 0
        stale = drift(args.source, out, solutions)
    except AssignmentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if stale:
        print(f"out of date: {', '.join(stale)}; run `python -m course_lib.assignments build`.")
        return 1
    print("student versions and solutions are up to date." if solutions else "student versions are up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
