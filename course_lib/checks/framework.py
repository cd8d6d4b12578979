"""The exercise feedback framework: run a learner's function against the reference, say what is wrong.

An `Exercise` names a reference function, the cases to try (fresh random inputs each run, plus edge
cases) and progressive hints; worked solutions come from the instructor notebooks (`solutions.py`).
`run(exercise, learner_fn)` compares, case by case:

    exception -> shape -> dtype -> non-finite values -> value (largest difference) -> gradient

and stops at the first problem with a message that names the case and what to look at. Public
`check_xxx(fn)` functions (one module per notebook) print a short success line or raise `CheckFailed`,
whose message Jupyter shows as one paragraph instead of a traceback, and which nbval sees as a failure.
"""

from __future__ import annotations

import math
import os
import random
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

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


def _flatten(out: Any) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def compare_outputs(got: Any, want: Any, rtol: float, atol: float) -> str | None:
    """None if `got` matches `want`, else a sentence saying how it differs."""
    # A single expected value is compared as one item, so a learner's list gets "returned a list".
    want_items = _flatten(want)
    got_items = _flatten(got) if isinstance(want, (tuple, list)) else [got]
    if len(got_items) != len(want_items):
        return f"returned {len(got_items)} value(s), expected {len(want_items)}."
    for k, (g, w) in enumerate(zip(got_items, want_items)):
        where = f"output {k}: " if len(want_items) > 1 else ""
        if isinstance(w, torch.Tensor):
            if not isinstance(g, torch.Tensor):
                return f"{where}returned a {type(g).__name__}, expected a torch.Tensor of shape {tuple(w.shape)}."
            if g.shape != w.shape:
                return f"{where}wrong shape: got {tuple(g.shape)}, expected {tuple(w.shape)}."
            if g.dtype != w.dtype:
                return f"{where}wrong dtype: got {g.dtype}, expected {w.dtype}."
            if w.is_floating_point():
                gd, wd = g.detach().double(), w.detach().double()
                w_finite = torch.isfinite(wd)
                if (w_finite & ~torch.isfinite(gd)).any():
                    return f"{where}contains NaN or inf where the reference is finite (often an unstable exp or a log of 0)."
                # Where the reference itself is inf or NaN (a masked logit, say), only the same value matches:
                # a difference there is inf or NaN, which no tolerance comparison would flag.
                same = (gd == wd) | (torch.isnan(gd) & torch.isnan(wd))
                odd = ~w_finite & ~same
                if odd.any():
                    idx = tuple(int(i) for i in odd.nonzero()[0])
                    return (f"{where}wrong values at index {idx}: got {gd[idx].item()}, expected {wd[idx].item()} "
                            "(where the reference is inf or NaN, the same value is expected).")
                diff = torch.where(w_finite, (gd - wd).abs(), 0.0)
                bound = atol + rtol * torch.where(w_finite, wd.abs(), 0.0)
                if (diff > bound).any():
                    idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.dim() else ()
                    at = f" at index {idx}" if idx else ""
                    return (f"{where}wrong values: largest difference {diff.max().item():.3g}{at} "
                            f"(got {gd[idx].item():.6g}, expected {wd[idx].item():.6g}).")
            elif not torch.equal(g, w):
                wrong = (g != w).nonzero()[:3].tolist()
                return f"{where}wrong values at indices {wrong} (got {g[tuple(wrong[0])].item()}, expected {w[tuple(wrong[0])].item()})."
        elif isinstance(w, float):
            if not isinstance(g, (int, float)) and not (isinstance(g, torch.Tensor) and g.numel() == 1):
                return f"{where}returned a {type(g).__name__}, expected a number."
            value = float(g)
            # Written so that NaN fails: every comparison with NaN is False.
            close = value == w or (math.isnan(value) and math.isnan(w)) or (
                math.isfinite(w) and abs(value - w) <= atol + rtol * abs(w))
            if not close:
                return f"{where}wrong value: got {value:.6g}, expected {w:.6g}."
        elif g != w:
            return f"{where}got {g!r}, expected {w!r}."
    return None


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
    tensors = [o for o in _flatten(out) if isinstance(o, torch.Tensor) and o.is_floating_point()]
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
            except NotImplementedError as exc:
                return Result(exercise.name, False, f"Not implemented yet: {exc}", done)
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
        except NotImplementedError as exc:
            return Result(exercise.name, False, f"Not implemented yet: {exc}", done)
        except Exception as exc:  # noqa: BLE001
            return Result(exercise.name, False, f"{prefix}: your function raised {_describe_exception(exc)}."
                          f"{_diagnosis(exercise, learner_fn, seed)}", done)
        compare = exercise.compare or (lambda g, w: compare_outputs(g, w, exercise.rtol, exercise.atol))
        problem = compare(got, want)
        if problem is None and case.grad:
            for k, (g, w) in enumerate(zip(got_grads, want_grads)):
                if w is None:
                    continue
                if g is None:
                    problem = (f"no gradient reaches input {k}: something detaches the computation "
                               "(.detach(), .item(), .numpy(), torch.no_grad or a new tensor built from values).")
                    break
                problem = compare_outputs(g, w, exercise.rtol, exercise.atol)
                if problem is not None:
                    problem = f"the values match but the gradient w.r.t. input {k} does not: {problem}"
                    break
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


def check(name: str, learner_fn: Callable, seed: int | None = None) -> Result:
    """Run exercise `name`; print a success line, or raise CheckFailed with the specific problem."""
    result = run(find_exercise(name), learner_fn, seed)
    if result.passed:
        print(f"✓ {name}: {result.message}")
        return result
    _install_ipython_handler()
    # A stub's own message already points to the hint; say it once.
    tip = "" if f"hint('{name}')" in result.message else f" Stuck? hint('{name}') gives a hint."
    raise CheckFailed(f"{name}: {result.message}{tip}")


def hint(name: str) -> str:
    """Print the next hint for exercise `name` (each call reveals one more)."""
    hints = find_exercise(name).hints
    shown = _hints_shown.get(name, 0)
    k = min(shown, len(hints) - 1)
    _hints_shown[name] = shown + 1
    more = "" if k == len(hints) - 1 else f" Call hint('{name}') again for the next one."
    text = f"Hint {k + 1} of {len(hints)} for {name}: {hints[k]}{more}"
    if k == len(hints) - 1:
        text += f" Still stuck? solution('{name}') shows a worked solution."
    print(text)
    return text
