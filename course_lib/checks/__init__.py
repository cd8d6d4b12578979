"""Exercise checks with hints: `check_xxx(learner_fn)`, `hint(name)`, `solution(name)`.

The framework is in `framework.py`; each course topic registers its exercises in its own module, in
the order of the notebooks that use them.
"""

from course_lib.checks import explorer, fused_kernel, loss_math, maml, simclr, views
from course_lib.checks.loss_math import *  # noqa: F401,F403 - notebook 01
from course_lib.checks.explorer import *  # noqa: F401,F403 - notebook 03, the embedding explorer
from course_lib.checks.framework import REGISTRY, Case, CheckFailed, Exercise, Result, check, hint, run, solution
from course_lib.checks.fused_kernel import *  # noqa: F401,F403 - notebook 04
from course_lib.checks.maml import *  # noqa: F401,F403 - notebooks 05 and 06
from course_lib.checks.simclr import *  # noqa: F401,F403 - notebook 03
from course_lib.checks.views import *  # noqa: F401,F403 - notebook 02

__all__ = [
    "CheckFailed", "Case", "Exercise", "Result", "REGISTRY", "check", "hint", "run", "solution",
    *loss_math.__all__, *views.__all__, *simclr.__all__, *explorer.__all__, *fused_kernel.__all__, *maml.__all__,
]
