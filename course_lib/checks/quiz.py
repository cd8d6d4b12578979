"""Self-checks: the few questions at the end of a notebook, checked like its exercises.

A self-check is an exercise whose answer is a dict {question number: answer}: a letter for a multiple
choice, a number for a numeric question. Each question carries its feedback: why each wrong letter is
wrong, what to compute for a number, and why the right answer is right (printed once all are right).
Numeric answers are computed by a function, so that the key is derived rather than typed in.

    SELF_CHECK = self_check("self_check_01", {
        1: Choice("b", why="...", wrong={"a": "...", "c": "..."}),
        2: Number(lambda: math.log1p(math.exp(-0.6)), why="...", hint="..."),
    }, hints=[...])

    check_self_check_01({1: "b", 2: 0.437})      # in the notebook, after the learner's answers
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from course_lib.checks.framework import Case, Exercise, check, register


@dataclass(frozen=True)
class Choice:
    """A multiple-choice question: `answer` is the right letter; `wrong` says, per other letter, why not."""

    answer: str
    why: str
    wrong: Mapping[str, str] = field(default_factory=dict)

    def letters(self) -> list[str]:
        return sorted({self.answer, *self.wrong})

    def problem(self, got: Any) -> str | None:
        if not isinstance(got, str) or got.strip().lower() not in self.letters():
            return f"answer with one letter among {self.letters()} as a string, got {got!r}."
        letter = got.strip().lower()
        return None if letter == self.answer else f"not '{letter}': {self.wrong[letter]}"


@dataclass(frozen=True)
class Number:
    """A numeric question: `value()` computes the answer; `hint` says what to compute when it is off."""

    value: Callable[[], float]
    why: str
    hint: str
    rtol: float = 0.01
    atol: float = 0.0

    def problem(self, got: Any) -> str | None:
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return f"answer with a number, got {got!r}."
        want = float(self.value())
        if not math.isfinite(float(got)) or abs(float(got) - want) > self.atol + self.rtol * abs(want):
            return f"{got!r} is not it: {self.hint}"
        return None


Question = Choice | Number


def _compare(questions: Mapping[int, Question]) -> Callable[[Any, Any], str | None]:
    def compare(got: Any, _want: Any) -> str | None:
        if not isinstance(got, Mapping):
            return f"expected a dict {{question number: answer}}, got a {type(got).__name__}."
        missing = [k for k in questions if k not in got]
        if missing:
            return f"no answer to question(s) {missing}; answer all {len(questions)}."
        unknown = [k for k in got if k not in questions]
        if unknown:
            return f"there is no question {unknown[0]!r}; the questions are {sorted(questions)}."
        wrong = [f"question {k}: {p}" for k, q in sorted(questions.items()) if (p := q.problem(got[k])) is not None]
        if wrong:
            return f"{len(wrong)} of {len(questions)} not right yet. " + " ".join(wrong)
        return None

    return compare


def self_check(name: str, questions: Mapping[int, Question], hints: list[str]) -> Callable:
    """Register the self-check `name`; returns its public check: check(answers) for a dict, or a function
    returning one. Once every answer is right, it prints why each is right."""
    register(Exercise(name=name, reference=lambda: None, cases=[Case("your answers", lambda gen: ())],
                      hints=hints, compare=_compare(questions)))

    def check_answers(answers: Mapping[int, Any] | Callable[[], Mapping[int, Any]]) -> None:
        check(name, answers if callable(answers) else (lambda: answers))
        for k, q in sorted(questions.items()):
            print(f"  {k}. {q.why}")

    check_answers.__name__ = f"check_{name}"
    check_answers.__doc__ = f"Check the answers of {name}: a dict {{question number: letter or number}}."
    return check_answers


__all__ = ["Choice", "Number", "self_check"]
