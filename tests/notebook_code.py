"""What a notebook has defined by the time it reaches a cell: for tests that run one exercise in isolation.

Runs, from every code cell before `index`, only the top-level imports, function and class definitions
(no training, no data loading, no plots), in a namespace that starts with what every course notebook
imports (torch, F, nn, math and the checks). A definition that raises NotImplementedError (a student
stub at the top of a class body) is skipped, as a learner's kernel would have skipped it, and so is one
that needs a value computed at run time (a default argument from a config, say): NameError.
"""

from __future__ import annotations

import ast
import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import assignments

_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)


def namespace_before(nb: dict, index: int) -> dict:
    namespace = {"torch": torch, "F": F, "nn": nn, "math": math}
    exec("from course_lib.checks import *", namespace)
    for cell in nb["cells"][:index]:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse(assignments._source(cell))
        for node in tree.body:
            if isinstance(node, _DEFINITIONS):
                try:
                    exec(compile(ast.Module([node], type_ignores=[]), "<notebook>", "exec"), namespace)
                except (NotImplementedError, NameError):
                    pass
    return namespace
