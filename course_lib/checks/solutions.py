"""Worked solutions, shown by `solution(name)`, taken from the instructor notebooks.

The notebooks are the one source: each solution cell (nbgrader metadata `solution: true`, its
`grade_id` the exercise name) holds the worked solution between `### BEGIN SOLUTION` and
`### END SOLUTION`. `python -m course_lib.assignments build` copies every such cell, without the two
marker lines, into `solutions.json` beside this file ({exercise: source}), which ships as package data
and which `assignments check` compares with the notebooks. Nothing here is written by hand.

The checks never read this file (each compares against an independent reference), so an installation
without it checks and hints as usual and `solution()` says that it has none; in graded mode (graded.py)
`solution()` gives none either way.
"""

from __future__ import annotations

import json
from pathlib import Path

from course_lib.checks import graded
from course_lib.checks.framework import find_exercise

SOLUTIONS_FILE = Path(__file__).with_name("solutions.json")


def load(path: Path | None = None) -> dict[str, str] | None:
    """{exercise: worked solution source}, or None when this installation has no solutions file."""
    try:
        text = Path(path or SOLUTIONS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text)


def solution(name: str) -> str:
    """Print the worked solution of exercise `name` (try its hints first) and return its source; where there is
    none to give (graded mode, no solutions file), print why and return ""."""
    find_exercise(name)  # a typo raises, naming the known exercises
    worked = None if graded.ACTIVE else load()
    if graded.ACTIVE:
        why = f"Worked solutions are not available in graded mode ({graded.ENV} is set)."
    elif worked is None:
        why = (f"Worked solutions are not available in this installation (course_lib/checks/{SOLUTIONS_FILE.name} "
               "is not installed).")
    elif name not in worked:
        why = (f"No worked solution for {name!r} in this installation: its {SOLUTIONS_FILE.name} is older than the "
               "exercise. An instructor regenerates it with `python -m course_lib.assignments build`.")
    else:
        print(worked[name])
        return worked[name]
    print(f"{why} hint('{name}') still gives hints, and the check says what differs.")
    return ""


__all__ = ["SOLUTIONS_FILE", "load", "solution"]
