"""The exercise feedback framework: run a learner's function against the reference, say what is wrong.

An `Exercise` names a reference function, the cases to try (fresh random inputs each run, plus edge
cases) and progressive hints; worked solutions come from the instructor notebooks (`solutions.py`).
`run(exercise, learner_fn)` compares, case by case:

    exception -> shape -> dtype -> non-finite values -> value (largest difference) -> gradient

and stops at the first problem with a message that names the case and what to look at. Public
`check_xxx(fn)` functions (one module per notebook) print a short success line and return None, or raise
`CheckFailed`, whose message Jupyter shows as one paragraph instead of a traceback, and which nbval and
nbgrader see as a failure. Warnings and stderr output during a check are reported on stdout after the
verdict (a grader scores a cell with stderr output 0). In graded mode (`graded.py`) a check also fails
code that calls the library's own implementation of the exercise (`Exercise.library`).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import random
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from course_lib.checks import graded
from course_lib.checks.compare import compare_outputs, flatten, gradient_problem

# Frames from inside the kit (course_lib/) or torch are not the learner's code.
_KIT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_TORCH = f"{os.sep}torch{os.sep}"


class CheckFailed(AssertionError):
    """An exercise check failed; the message says which case and what differs."""


@dataclass(frozen=True)
class Case:
    """One input to try. `make(gen)` returns the positional arguments, drawn from `gen`.

    grad: also compare gradients of a random projection of the output w.r.t. floating inputs.
    raises: the reference is expected to raise this exception type, and so must the learner's code.
    """

    name: str
    make: Callable[[torch.Generator], tuple]
    grad: bool = False
    raises: type[BaseException] | None = None


@dataclass(frozen=True)
class Exercise:
    """`reference` is independent of the worked solution (the library's, where it has one)."""

    name: str
    reference: Callable
    cases: Sequence[Case]
    hints: Sequence[str]
    rtol: float = 1e-4
    atol: float = 1e-5
    compare: Callable[[Any, Any], str | None] | None = None  # custom comparison: message or None
    # Explains a failure that no single case can see (state kept across calls, a sign flip): called
    # with the learner's function and a generator after a case fails; returns a sentence or None.
    diagnose: Callable[[Callable, torch.Generator], str | None] | None = None
    # The library's own implementations of what the exercise asks for (functions, classes, partials): in
    # graded mode a learner's code that calls one fails. The reference counts too when it is a library
    # function (not a partial, a lambda or a helper private to the checks).
    library: Sequence[Any] = ()

    def forbidden_code(self) -> dict:
        """{code object: name} that a learner's code must not enter in graded mode (see graded.py)."""
        ref = self.reference
        own = (inspect.isfunction(ref) and ref.__name__ != "<lambda>"
               and not ref.__module__.startswith("course_lib.checks"))
        return graded.library_code([*self.library, *([ref] if own else [])])


@dataclass
class Result:
    exercise: str
    passed: bool
    message: str
    cases_run: list[str] = field(default_factory=list)


REGISTRY: dict[str, Exercise] = {}
_hints_shown: dict[str, int] = {}


def register(exercise: Exercise) -> Exercise:
    REGISTRY[exercise.name] = exercise
    return exercise


class UnknownExercise(KeyError):
    """No exercise is registered under this name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


def find_exercise(name: str) -> Exercise:
    """The registered exercise `name`; a typo raises UnknownExercise naming every known exercise."""
    if name not in REGISTRY:
        raise UnknownExercise(f"no exercise called {name!r}; known: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


def _learner_frame(exc: BaseException) -> str:
    """' (line 3 of your code: `return x / 0`)' for the deepest frame outside the kit and torch."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not os.path.abspath(f.filename).startswith(_KIT) and _TORCH not in f.filename]
    if not frames:
        return ""
    last = frames[-1]
    code = f": `{last.line.strip()}`" if last.line else ""
    return f" (line {last.lineno} of your code{code})"


def _describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}{_learner_frame(exc)}"


def _clone_inputs(args: tuple, grad: bool) -> tuple:
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            a = a.detach().clone()
            if grad and a.is_floating_point():
                a.requires_grad_(True)
        out.append(a)
    return tuple(out)


def _gradients(fn: Callable, args: tuple, weights_seed: int) -> tuple[Any, list]:
    """Output of fn(*args) and the gradient of <output, random weights> w.r.t. each floating input."""
    out = fn(*args)
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    tensors = [o for o in flatten(out) if isinstance(o, torch.Tensor) and o.is_floating_point()]
    # No input to differentiate (e.g. the output depends only on a model's own parameters): nothing to compare.
    if not leaves or not any(t.requires_grad for t in tensors):
        return out, [None] * len(leaves)
    gen = torch.Generator().manual_seed(weights_seed)
    total = sum((t.float() * torch.randn(t.shape, generator=gen).to(t.device)).sum() for t in tensors if t.requires_grad)
    grads = torch.autograd.grad(total, leaves, allow_unused=True)
    return out, list(grads)


def _diagnosis(exercise: Exercise, learner_fn: Callable, seed: int) -> str:
    """' ' + the exercise's explanation of a failure, or '' (a diagnosis never raises)."""
    if exercise.diagnose is None:
        return ""
    try:
        text = exercise.diagnose(learner_fn, torch.Generator().manual_seed(seed))
    except Exception:  # noqa: BLE001 - the case's own message already describes the error
        return ""
    return f" {text}" if text else ""


def _not_implemented(exc: NotImplementedError) -> str:
    # A stub from a grader's release (nbgrader's `raise NotImplementedError()`) says nothing itself.
    said = str(exc).strip() or "the stub still raises NotImplementedError: replace that line with your code."
    return f"Not implemented yet: {said}" + ("" if said.endswith((".", "!", "?")) else ".")


def run(exercise: Exercise, learner_fn: Callable, seed: int | None = None) -> Result:
    """Run every case of `exercise` on `learner_fn`; stop at the first failure."""
    if not callable(learner_fn):
        return Result(exercise.name, False, f"expected a function, got {type(learner_fn).__name__}.")
    seed = random.randrange(2**31) if seed is None else seed
    done: list[str] = []
    for i, case in enumerate(exercise.cases):
        gen = torch.Generator().manual_seed(seed + i)
        args = case.make(gen)
        prefix = f"Case '{case.name}' (seed {seed + i})"
        if case.raises is not None:
            try:
                learner_fn(*_clone_inputs(args, False))
            # A stub first: NotImplementedError is a RuntimeError, so `raises=RuntimeError` would accept it.
            except graded.ReferenceCalled as exc:
                return Result(exercise.name, False, str(exc), done)
            except NotImplementedError as exc:
                return Result(exercise.name, False, _not_implemented(exc), done)
            except case.raises:
                done.append(case.name)
                continue
            except Exception as exc:  # noqa: BLE001 - any other learner error is reported, not raised
                return Result(exercise.name, False, f"{prefix}: expected {case.raises.__name__} for this bad input, "
                              f"but your code raised {_describe_exception(exc)}.", done)
            return Result(exercise.name, False, f"{prefix}: this input is invalid and should raise "
                          f"{case.raises.__name__}, but your code returned normally.", done)

        want, want_grads = _gradients(exercise.reference, _clone_inputs(args, case.grad), seed)
        try:
            got, got_grads = _gradients(learner_fn, _clone_inputs(args, case.grad), seed)
        except graded.ReferenceCalled as exc:
            return Result(exercise.name, False, str(exc), done)
        except NotImplementedError as exc:
            return Result(exercise.name, False, _not_implemented(exc), done)
        except Exception as exc:  # noqa: BLE001
            return Result(exercise.name, False, f"{prefix}: your function raised {_describe_exception(exc)}."
                          f"{_diagnosis(exercise, learner_fn, seed)}", done)
        compare = exercise.compare or (lambda g, w: compare_outputs(g, w, exercise.rtol, exercise.atol))
        problem = compare(got, want)
        if problem is None and case.grad:
            problem = gradient_problem(got_grads, want_grads, exercise.rtol, exercise.atol)
        if problem is not None:
            return Result(exercise.name, False, f"{prefix}: {problem}{_diagnosis(exercise, learner_fn, seed)}", done)
        done.append(case.name)
    return Result(exercise.name, True, f"{len(done)} cases passed: {', '.join(done)}.", done)


def _install_ipython_handler() -> None:
    """Show CheckFailed in Jupyter as one paragraph (the cell still counts as failed)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or getattr(shell, "_course_check_handler", False):
        return

    def handler(shell, etype, value, tb, tb_offset=None):
        # IPython skips its own error message for custom exceptions; send one, without the traceback
        # wall, so that the front end (and nbval, which watches for it) sees the cell fail.
        stb = [f"\x1b[0;31mCheckFailed\x1b[0m: {value}"]
        shell._showtraceback(etype, value, stb)
        return stb

    shell.set_custom_exc((CheckFailed,), handler)
    shell._course_check_handler = True


@contextlib.contextmanager
def _quiet_stderr(notes: list[str]):
    """Collect warnings and anything written to stderr into `notes` instead of letting them out.

    A grader (nbgrader) scores a check cell 0 when it writes to stderr, even if the check passed; so the
    check reports warnings itself, on stdout, after its verdict.
    """
    stderr = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(stderr):
        warnings.simplefilter("always")
        yield
    for w in caught:
        note = f"{w.category.__name__}: {w.message} ({os.path.basename(w.filename)}, line {w.lineno})"
        if note not in notes:
            notes.append(note)
    notes += [line for line in stderr.getvalue().splitlines() if line.strip()]


def check(name: str, learner_fn: Callable, seed: int | None = None) -> None:
    """Run exercise `name`; print a success line, or raise CheckFailed with the specific problem.

    Returns None: a grader reads a check cell's value as partial credit, and a learner sees the line once.
    """
    exercise = find_exercise(name)
    if graded.ACTIVE:
        learner_fn = graded.watch(learner_fn, name, exercise.forbidden_code())
    notes: list[str] = []
    with _quiet_stderr(notes):
        result = run(exercise, learner_fn, seed)
    seen = "".join(f"\n  (seen while checking: {note})" for note in notes)
    if result.passed:
        print(f"✓ {name}: {result.message}{seen}")
        return
    _install_ipython_handler()
    # A stub's own message already points to the hint; say it once.
    tip = "" if f"hint('{name}')" in result.message else f" Stuck? hint('{name}') gives a hint."
    raise CheckFailed(f"{name}: {result.message}{tip}{seen}")


def hint(name: str) -> str:
    """Print the next hint for exercise `name` (each call reveals one more)."""
    hints = find_exercise(name).hints
    shown = _hints_shown.get(name, 0)
    k = min(shown, len(hints) - 1)
    _hints_shown[name] = shown + 1
    more = "" if k == len(hints) - 1 else f" Call hint('{name}') again for the next one."
    text = f"Hint {k + 1} of {len(hints)} for {name}: {hints[k]}{more}"
    if k == len(hints) - 1 and not graded.ACTIVE:
        text += f" Still stuck? solution('{name}') shows a worked solution."
    print(text)
    return text
