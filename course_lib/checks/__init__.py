"""Exercise checks with hints: `check_xxx(learner_fn)`, `hint(name)`, `solution(name)`.

The framework is in `framework.py`; each course topic registers its exercises in its own module.
"""

from course_lib.checks.framework import CheckFailed, Case, Exercise, Result, REGISTRY, check, hint, run, solution
from course_lib.checks.contrastive import *  # noqa: F401,F403
from course_lib.checks.contrastive import __all__ as _contrastive

__all__ = ["CheckFailed", "Case", "Exercise", "Result", "REGISTRY", "check", "hint", "run", "solution", *_contrastive]
