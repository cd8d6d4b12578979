"""Graded mode: no worked solutions, and a check that refuses the library's own answer.

Self-study wants help at hand: `solution(name)` prints a worked solution, and the notebooks import the
library's implementation of what an exercise asks for (for the demos further down). Graded work must have
neither. With `COURSE_GRADED=1` in the environment of the grading server and of the learners' kernels:

- `solution(name)` says that solutions are not available in graded mode and gives none;
- each check runs the learner's code under a profiler hook (`sys.setprofile`) and fails the exercise
  when that code enters the library's implementation of it (the exercise's `library`, and its reference
  where that is a library function rather than one private to the checks).

The mode is read once, when the kit is imported, so a submission that edits `os.environ` afterwards does
not leave it. It guards against shortcuts; it is not a sandbox (code in the kernel can undo anything in
the kernel), so an instructor still reads what scores full marks suspiciously fast.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from types import CodeType
from typing import Any, Callable, Iterable

ENV = "COURSE_GRADED"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def read_mode(value: str | None = None) -> bool:
    """Whether `value` (default: the COURSE_GRADED environment variable) turns graded mode on."""
    text = (os.environ.get(ENV, "") if value is None else value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{ENV}={text!r} is not understood; set it to 1 for graded mode, or 0 (or unset it) for "
                     "self-study.")


ACTIVE = read_mode()


class ReferenceCalled(Exception):
    """In graded mode, the learner's code called the library's own implementation of the exercise."""


def _functions(obj: Any) -> Iterable[Callable]:
    """The Python functions behind `obj`: a function, a partial, a bound method, or every method of a class."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    obj = getattr(obj, "__func__", obj)  # a bound method
    if inspect.isclass(obj):
        for klass in obj.__mro__:
            if klass.__module__.startswith(("builtins", "torch.nn.modules.module", "torch.autograd.function")):
                continue
            for member in vars(klass).values():
                yield from _functions(getattr(member, "__func__", member))
    elif inspect.isfunction(obj):
        yield obj


def library_code(objects: Iterable[Any]) -> dict[CodeType, str]:
    """{code object: qualified name} of every Python function behind `objects`."""
    return {fn.__code__: f"{fn.__module__}.{fn.__qualname__}" for obj in objects for fn in _functions(obj)}


def watch(fn: Callable, exercise: str, forbidden: dict[CodeType, str]) -> Callable:
    """`fn`, but raising ReferenceCalled when a call to it enters any of the `forbidden` code objects."""
    if not forbidden or not callable(fn):
        return fn

    @functools.wraps(fn)
    def watched(*args, **kwargs):
        entered: list[str] = []

        def profile(frame, event, _arg):
            if event == "call" and frame.f_code in forbidden:
                entered.append(forbidden[frame.f_code])

        previous = sys.getprofile()
        sys.setprofile(profile)
        try:
            out = fn(*args, **kwargs)
        except Exception:
            if not entered:
                raise
        finally:
            sys.setprofile(previous)
        if entered:
            raise ReferenceCalled(
                f"your code calls the course library's own {entered[0]}, which is what exercise '{exercise}' "
                "asks you to write. In graded mode that scores nothing: write it yourself (other library "
                "functions and torch are fine).")
        return out

    return watched


__all__ = ["ACTIVE", "ENV", "ReferenceCalled", "library_code", "read_mode", "watch"]
