"""Student versions of the course notebooks: solutions out, stubs and checks in.

The instructor notebooks in notebooks/ hold the solutions between nbgrader's own markers,

    def nt_xent(z, temperature):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

in cells whose metadata says `{"nbgrader": {"solution": true, "grade_id": "<exercise>", ...}}`, so nbgrader
can use the notebooks as they are, without being a dependency of the kit. `build` writes
notebooks/exercises/ with each solution replaced by a stub that raises NotImplementedError and points to
`hint("<exercise>")`; the check cells stay, locked, so a learner (or a grading server) runs them.

    python -m course_lib.assignments build     # regenerate notebooks/exercises/
    python -m course_lib.assignments check     # exit 1 if the committed student versions drifted
    python -m course_lib.assignments strip     # clear outputs of the instructor notebooks before a commit
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import tempfile
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MARKDOWN_STUB = "_Write your answer here._"
ROOT = Path(__file__).resolve().parent.parent
SOURCE, DEST = ROOT / "notebooks", ROOT / "notebooks" / "exercises"


class AssignmentError(ValueError):
    """A notebook's solution markers or nbgrader metadata are inconsistent."""


def code_stub(exercise: str) -> str:
    return (f'raise NotImplementedError("Exercise \'{exercise}\': replace this line with your code. '
            f'Stuck? Run hint(\'{exercise}\'); solution(\'{exercise}\') shows one way to do it.")')


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _nbgrader(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


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


def student_notebook(nb: dict, name: str = "notebook") -> dict:
    """A student version of notebook `nb` (a parsed .ipynb): solutions stubbed, outputs cleared."""
    nb = clear_outputs(nb)
    for index, cell in enumerate(nb["cells"]):
        text, meta = _source(cell), _nbgrader(cell)
        where = f"{name}, cell {index}"
        has_markers = bool(solution_blocks(text)) if (BEGIN in text or END in text) else False
        if has_markers and not meta.get("solution"):
            raise AssignmentError(f"{where} has solution markers but no nbgrader metadata with solution: true.")
        if meta.get("solution"):
            exercise = meta.get("grade_id")
            if not exercise:
                raise AssignmentError(f"{where} is a solution cell without an nbgrader grade_id (the exercise name).")
            if not has_markers:
                raise AssignmentError(f"{where} (exercise {exercise!r}) is a solution cell without {BEGIN!r} markers.")
            cell["source"] = strip_solution(text, exercise, markdown=cell["cell_type"] == "markdown")
    return nb


def clear_outputs(nb: dict) -> dict:
    """A copy of `nb` without outputs, execution counts or execution timings."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
    return nb


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: a run killed mid-write leaves the old file, never half of one
    (this also rewrites the instructor notebooks, which hold the only copy of the solutions)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)  # mkstemp creates 0600; keep the file's own mode
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dumps(nb: dict) -> str:
    """The .ipynb text exactly as nbformat writes it, so files round-trip without diffs."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def build(source: Path = SOURCE, dest: Path = DEST) -> list[Path]:
    """Write a student version of every notebook in `source` to `dest`; remove stale ones."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(Path(source).glob("*.ipynb")):
        target = dest / path.name
        write(target, dumps(student_notebook(read(path), path.name)))
        written.append(target)
    for stale in set(dest.glob("*.ipynb")) - set(written):
        stale.unlink()
    return written


def drift(source: Path = SOURCE, dest: Path = DEST) -> list[str]:
    """Names of student notebooks in `dest` that differ from (or are missing in) a fresh build."""
    wanted = {p.name: dumps(student_notebook(read(p), p.name)) for p in sorted(Path(source).glob("*.ipynb"))}
    have = {p.name: p.read_text(encoding="utf-8") for p in Path(dest).glob("*.ipynb")}
    return sorted(n for n in wanted.keys() | have.keys() if wanted.get(n) != have.get(n))


def strip_outputs(source: Path = SOURCE) -> list[Path]:
    """Clear outputs of the instructor notebooks in place (they are committed without outputs)."""
    changed = []
    for path in sorted(Path(source).glob("*.ipynb")):
        before = path.read_text(encoding="utf-8")
        after = dumps(clear_outputs(json.loads(before)))
        if after != before:
            write(path, after)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.assignments", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "check", "strip"])
    parser.add_argument("--source", type=Path, default=SOURCE, help="instructor notebooks (default: notebooks/)")
    parser.add_argument("--dest", type=Path, default=DEST, help="student versions (default: notebooks/exercises/)")
    args = parser.parse_args(argv)
    if args.command == "build":
        for path in build(args.source, args.dest):
            print(f"wrote {path}")
        return 0
    if args.command == "strip":
        for path in strip_outputs(args.source):
            print(f"cleared outputs of {path}")
        return 0
    stale = drift(args.source, args.dest)
    if stale:
        print(f"student versions out of date: {', '.join(stale)}; run `python -m course_lib.assignments build`.")
        return 1
    print("student versions are up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
