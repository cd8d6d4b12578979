"""The exercise framework: a right answer passes, and each kind of wrong answer gets its own message.

Then the course's exercises: every worked solution in an instructor notebook passes its check cell
(against an independent reference), every exercise has exactly one worked solution in solutions.json,
a stub is "Not implemented yet", and each classic bug gets its specific diagnosis.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import assignments, checks, ipynb
from course_lib.checks import CheckFailed, Case, Exercise, check, framework, hint, run, solution
from course_lib.checks import graded, loss_math, solutions
from course_lib.checks.compare import compare_outputs
from course_lib.contrastive import losses
from course_lib.contrastive.losses import positive_index
from notebook_code import namespace_before
from notebook_code import worked as _worked

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def _reference_softplus(x):
    """The reference: softplus, elementwise, same shape and dtype."""
    return F.softplus(x)


@pytest.fixture
def exercise(monkeypatch):
    """A small exercise registered for one test, with fresh hint counters."""
    ex = Exercise(
        "_test_softplus", _reference_softplus,
        [Case("a (3, 4) tensor, with gradient", lambda g: (torch.randn(3, 4, generator=g),), grad=True),
         Case("large inputs (100)", lambda g: (torch.full((2,), 100.0),)),
         Case("a 3-D input must raise ValueError", lambda g: (torch.randn(2, 2, 2, generator=g),), raises=ValueError)],
        hints=["first hint", "second hint", "last hint"],
    )
    monkeypatch.setitem(framework.REGISTRY, ex.name, ex)
    monkeypatch.setattr(framework, "_hints_shown", {})
    return ex


def right(x):
    if x.dim() > 2:
        raise ValueError("expected at most 2-D")
    return torch.logaddexp(x, torch.zeros_like(x))


def _message(ex, fn):
    result = run(ex, fn, seed=0)
    assert not result.passed
    return result.message


def test_right_answer_passes_and_returns_nothing_a_grader_would_read_as_partial_credit(exercise, capsys):
    assert check(exercise.name, right, seed=0) is None
    assert capsys.readouterr().out.startswith(f"✓ {exercise.name}: 3 cases passed")
    assert len(run(exercise, right, seed=0).cases_run) == 3


def test_wrong_shape(exercise):
    message = _message(exercise, lambda x: right(x).sum(dim=-1))
    assert "Case 'a (3, 4) tensor, with gradient'" in message
    assert "wrong shape: got (3,), expected (3, 4)" in message


def test_wrong_dtype(exercise):
    assert "wrong dtype: got torch.float64, expected torch.float32" in _message(exercise, lambda x: right(x).double())


def test_wrong_value_reports_the_largest_difference(exercise):
    def off_by_one_somewhere(x):
        out = right(x)
        return out + (torch.arange(out.numel()).view(out.shape) == 5)  # + 1 at flat index 5 = (1, 1)

    message = _message(exercise, off_by_one_somewhere)
    assert "wrong values: largest difference 1 at index (1, 1)" in message


def test_not_a_tensor(exercise):
    assert "returned a list, expected a torch.Tensor of shape (3, 4)" in _message(exercise, lambda x: right(x).tolist())


def test_non_finite_output(exercise):
    message = _message(exercise, lambda x: torch.log(1 + torch.exp(x)))  # exp(100) overflows float32
    assert "Case 'large inputs (100)'" in message and "NaN or inf where the reference is finite" in message


@pytest.mark.parametrize("got", [float("nan"), float("inf"), 0.0])
def test_non_finite_reference_values_must_be_matched_exactly(got):
    """A masked logit (-inf) in the reference: NaN, +inf or a finite number there is wrong, not "within tolerance"."""
    want = torch.tensor([float("-inf"), 1.0])
    message = compare_outputs(torch.tensor([got, 1.0]), want, rtol=1e-4, atol=1e-5)
    assert message is not None and "wrong values at index (0,)" in message and "same value" in message
    assert compare_outputs(want.clone(), want, rtol=1e-4, atol=1e-5) is None
    nan = torch.tensor([float("nan"), 2.0])
    assert compare_outputs(nan.clone(), nan, rtol=1e-4, atol=1e-5) is None


@pytest.mark.parametrize("got,want", [(float("nan"), 1.0), (float("-inf"), float("inf")), (1.1, 1.0),
                                      (torch.tensor(float("nan")), 0.5)])
def test_a_wrong_or_nan_number_fails_a_float_comparison(got, want):
    assert "wrong value" in compare_outputs(got, want, rtol=1e-4, atol=1e-5)


def test_a_number_within_tolerance_passes():
    assert compare_outputs(1.0 + 1e-6, 1.0, rtol=1e-4, atol=1e-5) is None
    assert compare_outputs(float("inf"), float("inf"), rtol=1e-4, atol=1e-5) is None


def test_stub_on_a_raises_case_is_not_implemented_even_when_runtimeerror_is_expected():
    """NotImplementedError subclasses RuntimeError: a stub must not pass a case that expects RuntimeError."""
    ex = Exercise("_test_raises_runtime", lambda x: x, [Case("bad input", lambda g: (torch.zeros(1),), raises=RuntimeError)],
                  hints=["h"])

    def stub(x):
        raise NotImplementedError("Exercise '_test_raises_runtime': replace this line with your code.")

    result = run(ex, stub, seed=0)
    assert not result.passed and result.message.startswith("Not implemented yet")


def test_detached_output_means_no_gradient(exercise):
    message = _message(exercise, lambda x: right(x).detach())
    assert "no gradient reaches input 0" in message and ".detach()" in message


def test_wrong_gradient_with_right_value(exercise):
    def half_gradient(x):
        y = right(x)
        return 0.5 * y + 0.5 * y.detach()  # same value, half the gradient

    message = _message(exercise, half_gradient)
    assert "the values match but the gradient w.r.t. input 0 does not" in message
    assert "largest difference" in message


def test_learner_exception_is_one_paragraph_with_the_learners_line(exercise):
    def broken(x):
        scale = x.shape[5]  # IndexError here
        return x * scale

    message = _message(exercise, broken)
    assert "your function raised IndexError" in message
    assert "of your code: `scale = x.shape[5]  # IndexError here`" in message
    assert "\n" not in message and "Traceback" not in message


def test_not_implemented_yet(exercise):
    def stub(x):
        raise NotImplementedError("Exercise '_test_softplus': replace this line with your code.")

    message = _message(exercise, stub)
    assert message.startswith("Not implemented yet: Exercise '_test_softplus'")


def test_missing_raise_on_bad_input(exercise):
    message = _message(exercise, lambda x: torch.logaddexp(x, torch.zeros_like(x)))
    assert "Case 'a 3-D input must raise ValueError'" in message
    assert "should raise ValueError, but your code returned normally" in message


def test_wrong_exception_type_on_bad_input(exercise):
    def raises_type_error(x):
        if x.dim() > 2:
            raise TypeError("nope")
        return right(x)

    assert "expected ValueError for this bad input, but your code raised TypeError: nope" in _message(exercise, raises_type_error)


def test_check_raises_checkfailed_pointing_to_the_hint(exercise):
    with pytest.raises(CheckFailed, match=r"wrong shape.*Stuck\? hint\('_test_softplus'\)"):
        check(exercise.name, lambda x: right(x).flatten(), seed=0)


def test_not_a_function(exercise):
    assert "expected a function, got int" in _message(exercise, 3)


def test_diagnosis_is_appended_and_never_raises(exercise, monkeypatch):
    explained = Exercise(**{**exercise.__dict__, "diagnose": lambda fn, gen: "Here is why."})
    assert _message(explained, lambda x: right(x) + 1).endswith("Here is why.")

    def crashing(fn, gen):
        raise RuntimeError("diagnosis bug")

    quiet = Exercise(**{**exercise.__dict__, "diagnose": crashing})
    assert "diagnosis bug" not in _message(quiet, lambda x: right(x) + 1)


def test_output_that_depends_only_on_parameters():
    """A case without differentiable inputs (a model built from ints) must not crash the gradient step."""
    ex = Exercise("_test_linear", lambda n: nn.Linear(n, 2)(torch.ones(1, n)).shape[1] * torch.ones(()),
                  [Case("n=3", lambda g: (3,), grad=True)], hints=["h"])
    assert run(ex, lambda n: 2 * torch.ones(()), seed=0).passed


def test_hints_progress_then_stay_on_the_last(exercise, capsys):
    texts = [hint(exercise.name) for _ in range(4)]
    assert texts[0].startswith("Hint 1 of 3 for _test_softplus: first hint") and "again for the next" in texts[0]
    assert texts[1].startswith("Hint 2 of 3") and "second hint" in texts[1]
    assert texts[2].startswith("Hint 3 of 3") and "solution('_test_softplus')" in texts[2]
    assert texts[3] == texts[2]
    assert capsys.readouterr().out.count("Hint") == 4


def test_solution_prints_the_worked_solution_from_the_solutions_file(exercise, tmp_path, monkeypatch, capsys):
    path = tmp_path / "solutions.json"
    path.write_text(json.dumps({exercise.name: "def softplus(x):\n    return torch.logaddexp(x, torch.zeros_like(x))"}))
    monkeypatch.setattr(solutions, "SOLUTIONS_FILE", path)
    text = solution(exercise.name)
    assert text.startswith("def softplus(x):") and capsys.readouterr().out == text + "\n"


def test_solution_says_when_this_installation_has_none(exercise, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(solutions, "SOLUTIONS_FILE", tmp_path / "missing.json")
    assert solution(exercise.name) == "" and "not available in this installation" in capsys.readouterr().out
    (tmp_path / "old.json").write_text("{}")
    monkeypatch.setattr(solutions, "SOLUTIONS_FILE", tmp_path / "old.json")
    assert solution(exercise.name) == "" and "No worked solution for '_test_softplus'" in capsys.readouterr().out


@pytest.mark.parametrize("call", [lambda: hint("nope"), lambda: solution("nope"), lambda: check("nope", abs)],
                         ids=["hint", "solution", "check"])
def test_unknown_exercise_names_the_known_ones(call):
    with pytest.raises(KeyError, match="no exercise called 'nope'; known: .*nt_xent") as failure:
        call()
    assert isinstance(failure.value, checks.UnknownExercise) and not str(failure.value).startswith(("'", '"'))


# ---- the course's exercises ---------------------------------------------------------------------


def _notebook_exercises() -> list[tuple[Path, str, str, str]]:
    """(notebook, exercise, worked solution without markers, its check cell) for every instructor notebook."""
    found = []
    for path in NOTEBOOKS:
        nb = ipynb.read(path)
        check_cells = {ipynb.nbgrader(c).get("grade_id"): ipynb.source(c) for c in nb["cells"]}
        for name, code in assignments.worked_solutions(nb, path.name).items():
            found.append((path, name, code, check_cells.get(f"check_{name}", "")))
    return found


NOTEBOOK_EXERCISES = _notebook_exercises()


@pytest.mark.parametrize("path,name,code,check_cell", NOTEBOOK_EXERCISES,
                         ids=[f"{p.stem[:2]}-{n}" for p, n, _, _ in NOTEBOOK_EXERCISES])
def test_worked_solution_in_the_notebook_passes_its_check_cell(path, name, code, check_cell, monkeypatch):
    """The notebook's own solution cell, then its check cell: a broken worked solution fails here. Run in
    graded mode, so that a worked solution that uses the library's own answer would fail too."""
    monkeypatch.setattr(graded, "ACTIVE", True)
    assert f"check_{name}(" in check_cell, f"{path.name}: no check cell with grade_id check_{name}"
    random.seed(f"{path.name}:{name}")  # the check's random cases, reproducibly
    nb = ipynb.read(path)
    index = next(i for i, c in enumerate(nb["cells"]) if ipynb.nbgrader(c).get("grade_id") == name)
    namespace, out = namespace_before(nb, index), io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"{path.name}:{name}", "exec"), namespace)
        exec(compile(check_cell, f"{path.name}:check_{name}", "exec"), namespace)
    assert out.getvalue().startswith(f"✓ {name}:"), out.getvalue()


def test_every_exercise_has_one_worked_solution_and_every_solution_an_exercise():
    worked = solutions.load()
    assert worked is not None, "course_lib/checks/solutions.json is missing: run `python -m course_lib.assignments build`"
    assert set(worked) == set(framework.REGISTRY)
    assert worked == {name: code for _, name, code, _ in NOTEBOOK_EXERCISES}, (
        "solutions.json differs from the notebooks' solution cells: run `python -m course_lib.assignments build`")


@pytest.mark.parametrize("name", sorted(framework.REGISTRY))
def test_every_exercise_has_a_public_check_and_enough_hints(name):
    assert callable(getattr(checks, f"check_{name}")) and f"check_{name}" in checks.__all__
    assert len(framework.REGISTRY[name].hints) >= 2


@pytest.mark.parametrize("name", sorted(framework.REGISTRY))
def test_stub_is_not_implemented_yet(name):
    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise '{name}': replace this line with your code.")

    with pytest.raises(CheckFailed, match=f"{name}: Not implemented yet"):
        getattr(checks, f"check_{name}")(stub)


def test_solution_shows_the_notebook_cell(capsys):
    text = solution("nt_xent")
    assert text.startswith("def nt_xent(z, temperature=0.5):") and "F.cross_entropy" in text
    assert assignments.BEGIN not in text and assignments.END not in text
    assert capsys.readouterr().out == text + "\n"


def test_similarity_reference_is_the_librarys_loss():
    """similarity_gradient's reference differentiates the loss written on sim: it must be NT-Xent's."""
    z = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    zn = F.normalize(z, dim=1)
    assert torch.allclose(loss_math._loss_from_similarities(zn @ zn.T, 0.3), losses.nt_xent_reference(z, 0.3))


# The bugs of notebook 01, exactly as the learner sees them; the fixed versions come from solutions.json.


def nt_xent_with_diagonal(z, temperature=0.5):
    zn = F.normalize(z, dim=1)
    return F.cross_entropy(zn @ zn.T / temperature, positive_index(len(z)))


def nt_xent_unnormalised(z, temperature=0.5):
    logits = (z @ z.T / temperature).masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, positive_index(len(z)))


def uniformity_with_self_pairs(x, t=2.0):
    xn = F.normalize(x, dim=1)
    return (-t * torch.cdist(xn, xn).pow(2)).exp().mean().log()


def naive_cross_entropy(logits, targets):
    p = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
    return -p.gather(1, targets[:, None]).log().mean()


def nt_xent_without_raise(z, temperature=0.5):
    return losses.nt_xent_reference(z[: len(z) // 2 * 2], temperature)


def info_nce_bound_truncating(anchors, positives, temperature=0.1):
    """Right on pairs; silently drops the extra rows of a mismatched batch instead of raising."""
    a, p = anchors[: len(positives)], positives[: len(anchors)]
    return math.log(len(a)) - losses.info_nce(a, p, temperature)


BUGS = [
    ("nt_xent", nt_xent_with_diagonal, "Mask s(i, i) with -inf"),
    ("nt_xent", nt_xent_unnormalised, "L2-normalise the rows"),
    ("nt_xent", nt_xent_without_raise, "should raise ValueError"),
    ("softmax_cross_entropy", naive_cross_entropy, "NaN or inf"),
    ("similarity_gradient", lambda s, t: _worked("similarity_gradient")(s, t) * len(s), "the right one times"),
    ("similarity_gradient", lambda s, t: _worked("similarity_gradient")(s, t) + torch.eye(len(s)), "diagonal must be exactly 0"),
    ("uniformity", uniformity_with_self_pairs, "distance to itself"),
    ("l2_normalize", lambda x: x / x.norm(dim=1, keepdim=True), "NaN or inf"),
    ("alignment", lambda x, y, alpha=2.0: losses.alignment(x, y, alpha).detach(), "no gradient reaches input 0"),
    ("info_nce_bound", info_nce_bound_truncating, "should raise ValueError"),
]


@pytest.mark.parametrize("name,buggy,words", BUGS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BUGS)])
def test_each_bug_gets_its_specific_message(name, buggy, words):
    with pytest.raises(CheckFailed) as failure:
        getattr(checks, f"check_{name}")(buggy)
    assert words in str(failure.value)


# ---- self-checks (quiz) ------------------------------------------------------------------------------


@pytest.fixture
def quiz(monkeypatch):
    from course_lib.checks.quiz import Choice, Number, self_check

    monkeypatch.setattr(framework, "REGISTRY", dict(framework.REGISTRY))
    return self_check("_test_quiz", {
        1: Choice("b", why="b is right.", wrong={"a": "a is too slow.", "c": "c has no gradient."}),
        2: Number(lambda: math.log(15), why="log 15.", hint="take the log of 15."),
    }, hints=["first", "second"])


def test_a_right_self_check_explains_every_answer(quiz, capsys):
    quiz({1: "B ", 2: 2.71})
    out = capsys.readouterr().out
    assert out.startswith("✓ _test_quiz") and "1. b is right." in out and "2. log 15." in out


@pytest.mark.parametrize("answers,words", [
    ({1: "a", 2: 2.71}, "question 1: not 'a': a is too slow."),
    ({1: "b", 2: 3.0}, "question 2: 3.0 is not it: take the log of 15."),
    ({1: "b", 2: float("nan")}, "question 2: nan is not it"),
    ({1: "b", 2: True}, "answer with a number, got True"),
    ({1: "d", 2: 2.71}, "one letter among ['a', 'b', 'c']"),
    ({1: "b"}, "no answer to question(s) [2]"),
    ({1: "b", 2: 2.71, 3: "a"}, "there is no question 3"),
    (["b", 2.71], "expected a dict"),
], ids=["wrong-letter", "wrong-number", "nan", "bool", "unknown-letter", "missing", "extra", "not-a-dict"])
def test_each_wrong_self_check_answer_gets_its_feedback(quiz, answers, words):
    with pytest.raises(CheckFailed) as failure:
        quiz(answers)
    assert words in str(failure.value)
