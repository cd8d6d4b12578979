"""Exercise checks with hints and worked solutions: `check_xxx(learner_fn)`, `hint(name)`, `solution(name)`.

One module per notebook, named after it, registers that notebook's exercises (notebook 01, the longest,
has two, one per part):

    start_here    00  l2_normalize
    loss_math     01  softmax_cross_entropy, nt_xent, similarity_gradient, info_nce_bound, alignment, uniformity
    find_the_bugs 01  its "find the bugs" part: the fix_* exercises
    views         02  random_resized_crop_params, batched_flip
    simclr        03  weighted_knn, projection_head, neighbour_label_agreement
    fused_kernel  04  online_logsumexp, negatives_lse_grad
    maml          05  inner_loop, linear_meta_gradient
    label_free    07  nt_xent_as_episodes, prototype_logits, umtra_task, supcon (optional)

`framework` runs a learner's function against each exercise's independent reference and says what
differs; `solutions` prints the worked solutions, which `python -m course_lib.assignments build` extracts
from the instructor notebooks into solutions.json (the checks never read it).
"""

from course_lib.checks import find_the_bugs, fused_kernel, label_free, loss_math, maml, simclr, start_here, views
from course_lib.checks.framework import (REGISTRY, Case, CheckFailed, Exercise, Result, UnknownExercise, check,
                                         hint, run)
from course_lib.checks.find_the_bugs import *  # noqa: F401,F403
from course_lib.checks.fused_kernel import *  # noqa: F401,F403
from course_lib.checks.label_free import *  # noqa: F401,F403
from course_lib.checks.loss_math import *  # noqa: F401,F403
from course_lib.checks.maml import *  # noqa: F401,F403
from course_lib.checks.simclr import *  # noqa: F401,F403
from course_lib.checks.solutions import solution
from course_lib.checks.start_here import *  # noqa: F401,F403
from course_lib.checks.views import *  # noqa: F401,F403

__all__ = [
    "CheckFailed", "Case", "Exercise", "Result", "REGISTRY", "UnknownExercise", "check", "hint", "run", "solution",
    *start_here.__all__, *loss_math.__all__, *find_the_bugs.__all__, *views.__all__, *simclr.__all__, *fused_kernel.__all__, *maml.__all__,
    *label_free.__all__,
]
