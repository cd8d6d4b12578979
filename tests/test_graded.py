"""Graded mode and what a grader reads from a check cell.

In graded mode (COURSE_GRADED=1) a learner's code that calls the library's own implementation of the
exercise fails its check and `solution()` gives nothing (every worked solution passes in graded mode:
tests/test_checks.py); in either mode a passing check returns None and
writes nothing to stderr (nbgrader scores a cell with stderr output 0), and a stub from nbgrader's own
release (`raise NotImplementedError()`) still gets a message that says what to do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from course_lib.checks import CheckFailed, check, framework, graded, hint, solution
from course_lib.contrastive import losses


def _library_references() -> list[str]:
    """Exercises whose reference is the library's own function (a learner could call it directly)."""
    return sorted(name for name, ex in framework.REGISTRY.items()
                  if getattr(ex.reference, "__code__", None) in ex.forbidden_code())


@pytest.fixture
def graded_mode(monkeypatch):
    monkeypatch.setattr(graded, "ACTIVE", True)


@pytest.mark.parametrize("name", _library_references())
def test_calling_the_librarys_answer_fails_in_graded_mode_and_passes_otherwise(name, monkeypatch):
    reference = framework.REGISTRY[name].reference

    def forwards(*args, **kwargs):
        return reference(*args, **kwargs)

    try:  # self-study: allowed (it may still fail a bad-input case that the library leaves unchecked)
        check(name, forwards, seed=0)
    except CheckFailed as failure:
        assert "course library's own" not in str(failure)
    monkeypatch.setattr(graded, "ACTIVE", True)
    with pytest.raises(CheckFailed, match=f"calls the course library's own .*{reference.__name__}.* graded mode"):
        check(name, forwards, seed=0)


def test_library_extras_are_refused_too(graded_mode):
    with pytest.raises(CheckFailed, match=r"own course_lib\.contrastive\.losses\.nt_xent\b"):
        check("nt_xent", lambda z, temperature=0.5: losses.nt_xent(z, temperature), seed=0)


def test_a_refused_call_is_not_taken_for_the_expected_error_on_bad_input(graded_mode):
    """nt_xent's bad-input case expects ValueError, which the library's loss raises: still refused."""
    def cheat(z, temperature=0.5):
        if z.shape[0] % 2:
            return losses.nt_xent(z, temperature)  # raises the expected ValueError
        zn = torch.nn.functional.normalize(z, dim=1)
        logits = (zn @ zn.T / temperature).fill_diagonal_(float("-inf"))
        return torch.nn.functional.cross_entropy(logits, losses.positive_index(len(z)))

    with pytest.raises(CheckFailed, match="calls the course library's own"):
        check("nt_xent", cheat, seed=0)


def test_no_solution_and_no_pointer_to_one_in_graded_mode(graded_mode, capsys):
    assert solution("uniformity") == ""
    assert "not available in graded mode" in capsys.readouterr().out
    texts = [hint("uniformity") for _ in framework.REGISTRY["uniformity"].hints]
    assert "solution(" not in texts[-1]


def test_graded_mode_is_read_once_at_import():
    code = ("import os; from course_lib.checks import graded; os.environ['COURSE_GRADED'] = '0'; "
            "import importlib; print(graded.ACTIVE)")
    env = {**os.environ, "COURSE_GRADED": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), ("", False), ("0", False), ("off", False)])
def test_read_mode(value, expected):
    assert graded.read_mode(value) is expected


def test_read_mode_rejects_what_it_does_not_understand():
    with pytest.raises(ValueError, match="COURSE_GRADED='maybe' is not understood; set it to 1"):
        graded.read_mode("maybe")


def test_warnings_and_stderr_during_a_check_go_to_stdout_after_the_verdict(capsys):
    def noisy(x, y, alpha=2.0):
        warnings.warn("a learner's warning", UserWarning)
        print("progress...", file=sys.stderr)
        return losses.alignment(x, y, alpha)

    assert check("alignment", noisy, seed=0) is None
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("✓ alignment:") and "(seen while checking: UserWarning: a learner's warning" in out
    assert "(seen while checking: progress...)" in out


def test_a_failing_check_reports_its_warnings_in_its_message(capsys):
    def wrong(x, y, alpha=2.0):
        warnings.warn("look here", RuntimeWarning)
        return losses.alignment(x, y, alpha) + 1

    with pytest.raises(CheckFailed, match="(?s)wrong value.*seen while checking: RuntimeWarning: look here"):
        check("alignment", wrong, seed=0)
    assert capsys.readouterr().err == ""


def test_a_graders_empty_stub_says_what_to_do():
    def stub(x, y, alpha=2.0):
        raise NotImplementedError()  # what nbgrader's release puts in place of a solution

    with pytest.raises(CheckFailed) as failure:
        check("alignment", stub)
    message = str(failure.value)
    assert "Not implemented yet: the stub still raises NotImplementedError" in message
    assert "hint('alignment')" in message


def test_a_stub_message_without_a_full_stop_reads_as_a_sentence():
    def stub(x, y, alpha=2.0):
        raise NotImplementedError("replace this line with your code")  # the course's nbgrader stub

    with pytest.raises(CheckFailed, match=r"Not implemented yet: replace this line with your code\. Stuck\? "):
        check("alignment", stub)
