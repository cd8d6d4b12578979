"""The course as an nbgrader course, and what each notebook's exercises are worth.

    python -m course_lib.classroom init DIR [--only 01 05]   # DIR/nbgrader_config.py, DIR/source/<notebook>/
    python -m course_lib.classroom points                    # points per exercise and per notebook

`init` makes DIR an nbgrader course folder: one assignment per instructor notebook, named after it
(`01_contrastive_loss_math`), holding the notebook with its exercise cells tagged so that Run All goes on
past an unsolved exercise, and the course's markdown pages (the glossary) beside it; and a configuration
that grades in graded mode (no worked solutions, and a check refuses the library's own implementation of
its exercise), in the smoke tier (the checks do not depend on the tier), with nbgrader's stub saying what
to do. From DIR the usual nbgrader commands follow: generate_assignment, release, collect, autograde,
generate_feedback (INSTRUCTORS.md). Running `init` again rewrites the assignments from the notebooks.

Points live in each check cell's nbgrader metadata in the instructor notebooks, set by the work the
exercise takes: 1 for a single step, 2 for a short function or a self-check, 3 for a function with a
derivation or several parts, 4 for a piece of a training algorithm or a test of your own.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

from course_lib.assignments import SOURCE, AssignmentError, notebooks, pages, student_notebook
from course_lib.ipynb import dumps, nbgrader, read, write
from course_lib.run_all import continue_past

CONFIG = '''\
# nbgrader's configuration for this course, written by `python -m course_lib.classroom init`.
import os

c = get_config()  # noqa: F821 - nbgrader defines it

# Every notebook nbgrader runs (validate, autograde) runs in graded mode: no worked solutions, and a check
# that refuses a call into the library's own implementation of its exercise. The smoke tier keeps each
# notebook to minutes; the checks are the same in every tier.
os.environ.setdefault("COURSE_GRADED", "1")
os.environ.setdefault("COURSE_TIER", "smoke")

# nbgrader's stub in place of each solution; the check's message adds which hint to ask for.
c.ClearSolutions.code_stub = {"python": 'raise NotImplementedError("replace this line with your code")'}
# Seconds per cell, generous: the slowest smoke-tier notebook takes about 2.5 minutes in all on 2 CPU cores.
c.Execute.timeout = 900
'''


def assignment_notebook(nb: dict) -> dict:
    """An instructor notebook as an nbgrader source: its exercise cells, and the cells that use them, tagged
    so that Run All continues past an unsolved exercise (nbgrader's release then locks the exercise cells)."""
    return continue_past(copy.deepcopy(nb), nb, student_notebook(nb))


def selected(source: Path, only: list[str] | None = None) -> list[Path]:
    """The instructor notebooks in `source` whose names start with one of `only` (all when None)."""
    found = notebooks(source)
    if not only:
        return found
    chosen = [p for p in found if p.name.startswith(tuple(only))]
    unknown = [o for o in only if not any(p.name.startswith(o) for p in found)]
    if unknown:
        raise AssignmentError(f"no notebook in {source} starts with {', '.join(unknown)}; the notebooks are "
                              f"{', '.join(p.stem for p in found)}.")
    return chosen


def init(course: Path, source: Path = SOURCE, only: list[str] | None = None) -> list[Path]:
    """Write the nbgrader course folder `course` (see the module doc). Returns the paths written."""
    course = Path(course)
    written = [course / "nbgrader_config.py"]
    write(written[0], CONFIG)
    extra = pages(source)
    for path in selected(source, only):
        folder = course / "source" / path.stem
        write(folder / path.name, dumps(assignment_notebook(read(path))))
        written.append(folder / path.name)
        for name, text in extra.items():
            write(folder / name, text)
            written.append(folder / name)
    return written


def points(source: Path = SOURCE) -> dict[str, dict[str, int]]:
    """{notebook stem: {exercise: points}} from the check cells' nbgrader metadata, in notebook order."""
    table = {}
    for path in notebooks(source):
        cells = [nbgrader(c) for c in read(path)["cells"]]
        table[path.stem] = {m["grade_id"].removeprefix("check_"): m["points"] for m in cells if m.get("grade")}
    return table


def points_table(source: Path = SOURCE) -> str:
    """The points as a markdown table: notebook, its exercises with their points, the total."""
    rows = ["| notebook | exercises (points) | total |", "|---|---|---|"]
    for stem, worth in points(source).items():
        listed = ", ".join(f"{name} ({p:g})" for name, p in worth.items())
        rows.append(f"| `{stem}` | {listed} | {sum(worth.values()):g} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.classroom", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["init", "points"])
    parser.add_argument("course", nargs="?", type=Path, help="the nbgrader course folder (init)")
    parser.add_argument("--source", type=Path, default=SOURCE, help="instructor notebooks (default: ./notebooks)")
    parser.add_argument("--only", nargs="+", metavar="PREFIX", help="only the notebooks starting with these")
    args = parser.parse_args(argv)
    try:
        if args.command == "points":
            print(points_table(args.source), end="")
            return 0
        if args.course is None:
            parser.error("init needs the course folder: python -m course_lib.classroom init DIR")
        for path in init(args.course, args.source, args.only):
            print(f"wrote {path}")
    except AssignmentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"next: cd {args.course} && nbgrader generate_assignment <notebook name> (INSTRUCTORS.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
