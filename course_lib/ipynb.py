"""Reading and writing notebooks (.ipynb) exactly as nbformat does, and their cells' parts.

Plain JSON, so that the kit needs neither nbformat nor nbgrader to build or check its notebooks: `read`
and `dumps` round-trip a notebook without diffs, `write` replaces a file atomically.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from course_lib.checkpoint import atomic_write


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def nbgrader(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


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
    with atomic_write(path, "w", durable=False, encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def dumps(nb: dict) -> str:
    """The .ipynb text exactly as nbformat writes it, so files round-trip without diffs."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


__all__ = ["clear_outputs", "dumps", "nbgrader", "read", "source", "write"]
