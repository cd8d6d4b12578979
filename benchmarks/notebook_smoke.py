"""Run a course notebook's code headless, cell by cell in one namespace: the notebook stage of gpu_check.py.

    python benchmarks/notebook_smoke.py notebooks/03_simclr_cifar10.ipynb --report /tmp/03.json
    python benchmarks/notebook_smoke.py notebooks/00_start_here.ipynb --stand-ins     # as --cpu-smoke runs it

What Jupyter would do, without a kernel (the GPU machines have neither Jupyter nor nbval): every code cell
in order, in the notebook's folder, in one namespace; a cell that is not Python because of IPython magics
or shell lines (`%...`, `!...`) runs without those lines (a `%time stmt` line goes with its statement);
the value of a cell's last expression is displayed, and the figures a cell leaves open are drawn and
closed, as the inline backend does. Display goes through benchmarks/headless.py's stand-ins where IPython
or ipywidgets is missing (`--stand-ins`: always). The tier is the environment's (gpu_check sets
COURSE_TIER=smoke). `--compile` turns torch.compile on in the smoke tier's SimCLR preset, which the
notebooks' other SimCLR plans are built from (notebook 08's), so that a smoke run on a GPU also checks
the compiled step. The report (JSON) says: status, cells run and, on failure, the failing cell's index
among the notebook's cells with the traceback's last lines. Exits 1 when a cell fails.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import linecache
import os
import sys
import time
import traceback
import warnings
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TRACEBACK_LINES = 25   # of a failing cell's traceback, kept in the report
MAX_WARNINGS = 20      # distinct warnings kept in the report (e.g. torch.compile falling back to eager)


def runnable_source(source: str) -> str:
    """The cell's code; where it does not parse, without its magic and shell lines. (Only then: a valid line
    may start with `%` or `!` too, e.g. a continued `!= b`.)"""
    try:
        ast.parse(source)
        return source
    except SyntaxError:
        return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def code_cells(nb: dict) -> list[tuple[int, str]]:
    """(index among all the notebook's cells, runnable code) of each code cell, in order."""
    from course_lib import ipynb

    return [(i, runnable_source(ipynb.source(c))) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


def run_cell(code: str, index: int, namespace: dict, show) -> None:
    """Run one cell in `namespace`; show(value) for a last expression's value, as Jupyter does (not after `;`)."""
    filename = f"<cell {index}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)  # tracebacks show the code
    tree = ast.parse(code, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
        if value is not None and not code.rstrip().endswith(";"):
            show(value)


def flush_figures() -> None:
    """Draw every open pyplot figure (to nowhere) and close it, as the inline backend does after a cell."""
    if "matplotlib.pyplot" not in sys.modules:
        return
    plt = sys.modules["matplotlib.pyplot"]
    for number in plt.get_fignums():
        plt.figure(number).savefig(io.BytesIO(), format="png")
    plt.close("all")


def keep_warnings(seen: list[str]) -> None:
    """Collect each distinct warning's first line in `seen` (still shown as usual)."""
    shown = warnings.showwarning

    def show_and_keep(message, category, filename, lineno, file=None, line=None):
        text = f"{category.__name__}: {(str(message).splitlines() or [''])[0][:300]}"
        if text not in seen and len(seen) < MAX_WARNINGS:
            seen.append(text)
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show_and_keep


def run_notebook(path: Path, show) -> dict:
    """Run every code cell of `path` in its folder; a report of how far it got (see the module docstring)."""
    from course_lib import ipynb

    cells = code_cells(ipynb.read(path))
    os.chdir(path.parent)
    sys.path.insert(0, str(path.parent))         # a kernel started in the notebook's folder imports from it
    namespace = {"__name__": "__main__"}
    report = {"status": "ok", "code_cells": len(cells), "cells_run": 0, "warnings": []}
    keep_warnings(report["warnings"])
    for index, code in cells:
        try:
            run_cell(code, index, namespace, show)
            flush_figures()
        except BaseException as exc:               # KeyboardInterrupt and SystemExit end a cell too
            lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
            return {**report, "status": "failed", "cell": index, "cell_first_line": code.strip().split("\n")[0],
                    "error": f"{type(exc).__name__}: {exc}"[:500], "traceback": lines[-TRACEBACK_LINES:]}
        report["cells_run"] += 1
    return report


def compile_simclr_smoke() -> None:
    """torch.compile on in PRESETS["smoke"], before any notebook code reads it (plans copy it on import)."""
    from course_lib.contrastive import simclr

    simclr.PRESETS["smoke"] = replace(simclr.PRESETS["smoke"], compile=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--report", type=Path, default=None, help="where to write the JSON report")
    parser.add_argument("--stand-ins", action="store_true", help="headless IPython and ipywidgets even if installed")
    parser.add_argument("--compile", action="store_true", help="torch.compile in the smoke tier's SimCLR preset")
    args = parser.parse_args(argv)
    report_path = args.report.resolve() if args.report else None   # before run_notebook changes folder
    os.environ.setdefault("MPLBACKEND", "Agg")   # the inline backend's stand-in: figures render off screen
    warnings.filterwarnings("ignore", "FigureCanvasAgg is non-interactive")  # plt.show() there: nothing to show
    from benchmarks import headless

    stood_in = headless.install(force=args.stand_ins)
    if args.compile:
        compile_simclr_smoke()
    from IPython.display import display           # the stand-in's or the real one, as installed just now

    start = time.perf_counter()
    report = run_notebook(args.notebook.resolve(), display)
    report.update(seconds_in_cells=time.perf_counter() - start, stand_ins=stood_in, compile=args.compile)
    if report_path:
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    if report["status"] != "ok":
        print(f"{args.notebook.name}: cell {report['cell']} failed: {report['error']}", *report["traceback"],
              sep="\n", file=sys.stderr)
        return 1
    print(f"{args.notebook.name}: {report['cells_run']} code cells ran in {report['seconds_in_cells']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
