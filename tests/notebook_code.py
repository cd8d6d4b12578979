"""Notebook code for tests that run one exercise in isolation: what a notebook has defined by the time it
reaches a cell, a worked solution's function, and a check that must fail with given words.

Runs, from every code cell before `index`, only the top-level imports, function and class definitions
(no training, no data loading, no plots), in a namespace that starts with what every course notebook
imports (torch, F, nn, math and the checks). A definition that raises NotImplementedError (a student
stub at the top of a class body) is skipped, as a learner's kernel would have skipped it, and so is one
that needs a value computed at run time (a default argument from a config, say): NameError.
"""

from __future__ import annotations

import ast
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import ipynb
from course_lib.checks import CheckFailed, solutions

_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)


def basics() -> dict:
    """What every course notebook imports before its first exercise: torch, F, nn, math and the checks."""
    namespace = {"torch": torch, "F": F, "nn": nn, "math": math}
    exec("from course_lib.checks import *", namespace)
    return namespace


def namespace_before(nb: dict, index: int) -> dict:
    namespace = basics()
    for cell in nb["cells"][:index]:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse(ipynb.source(cell))
        for node in tree.body:
            if isinstance(node, _DEFINITIONS):
                try:
                    exec(compile(ast.Module([node], type_ignores=[]), "<notebook>", "exec"), namespace)
                except (NotImplementedError, NameError):
                    pass
    return namespace


def worked(name: str):
    """The function or class that exercise `name`'s worked solution (solutions.json) defines last."""
    code = solutions.load()[name]
    namespace = basics()
    exec(code, namespace)
    defined = [n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    return namespace[defined[-1]]


def fails(check, fn, *words: str) -> str:
    """check(fn) raises CheckFailed whose message holds every one of `words`; returns the message."""
    with pytest.raises(CheckFailed) as failure:
        check(fn)
    message = str(failure.value)
    for word in words:
        assert word in message, message
    return message
