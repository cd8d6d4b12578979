"""Which cells of a student notebook may raise until the exercises are solved (tagged so Run All goes on)."""

from __future__ import annotations

from course_lib.run_all import CONTINUE_TAG, continue_past, dependent_cells


def _code(src: str, **grading) -> dict:
    meta = {"nbgrader": {"grade_id": "x", **grading}} if grading else {}
    return {"cell_type": "code", "source": src, "metadata": meta, "outputs": []}


def test_the_exercise_its_check_and_what_uses_it_directly_or_through_a_value():
    cells = [
        _code("import torch\nlogits = torch.zeros(3)"),                      # 0 learner-free
        _code("def encode(x):\n    hidden = x * 2\n    return hidden", solution=True),  # 1 the exercise
        _code("check_encode(encode)", grade=True, locked=True),              # 2 its check
        {"cell_type": "markdown", "source": "encode reads ...", "metadata": {}},  # 3
        _code("z = encode(logits)"),                                         # 4 uses it
        _code("print(z.mean())"),                                            # 5 uses a value computed from it
        _code("print(hidden, logits)"),                                      # 6 the solution's local is not global
        _code("z = torch.ones(2)"),                                          # 7 rebinds z without the exercise
        _code("print(z)"),                                                   # 8 fine again
        _code("def later():\n    return encode(1)"),                         # 9 a function that calls it
        _code("%timeit encode(1)"),                                          # 10 a magic: not parsed
    ]
    student = [dict(c) for c in cells]
    student[1] = _code("def encode(x):\n    raise NotImplementedError", solution=True)
    assert dependent_cells(cells, student) == [1, 2, 4, 5, 9]


def test_what_only_the_worked_solution_binds_is_unusable_unless_bound_before():
    cells = [_code("import math\nscale = 2"),
             _code("import math\nscale = 3\nexample = math.pi", solution=True),   # the worked solution
             _code("print(math.pi, scale)"),                                       # both bound before: fine
             _code("print(example)")]                                              # only the solution binds it
    student = [cells[0], _code("raise NotImplementedError", solution=True), *cells[2:]]
    assert dependent_cells(cells, student) == [1, 3]


def test_imports_in_an_exercise_cell_still_run_in_the_student_version():
    exercise = "from math import pi\n\n\ndef area(r):\n    return pi * r * r"
    cells = [_code(exercise, solution=True), _code("print(pi)"), _code("print(area(1))")]
    student = [_code("from math import pi\n\n\ndef area(r):\n    raise NotImplementedError", solution=True),
               *cells[1:]]
    assert dependent_cells(cells, student) == [0, 2]


def test_loop_targets_are_bound_before_the_loop_body_reads_them():
    cells = [_code("def f():\n    pass", solution=True), _code("for f in range(3):\n    print(f)")]
    assert dependent_cells(cells, cells) == [0]


def test_continue_past_tags_once_and_keeps_other_tags():
    cells = [_code("answers = {1: 'a'}", solution=True), _code("check(answers)", grade=True)]
    cells[1]["metadata"]["tags"] = ["keep", CONTINUE_TAG]
    nb = continue_past({"cells": cells}, {"cells": cells}, {"cells": cells})
    assert [c["metadata"]["tags"] for c in nb["cells"]] == [[CONTINUE_TAG], ["keep", CONTINUE_TAG]]
