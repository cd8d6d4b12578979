"""Exercise checks with hints and worked solutions: `check_xxx(learner_fn)`, `hint(name)`, `solution(name)`.

One module per notebook, named after it, registers that notebook's exercises and its self-check; an
exercise whose check needs a machinery of its own (a bank of buggy losses, seeded models) has a module
named after it:

    start_here    00  l2_normalize
    loss_math     01  softmax_cross_entropy, nt_xent, similarity_gradient, info_nce_bound, alignment, uniformity,
                      self_check_01
    autopsy       01  its second part, a broken script taken apart: fix_encoder, fix_nt_xent_loss,
                      fix_optimizer, worked_example
    catches       01  the autopsy's last exercise, a test for losses: catches (its hidden bank of losses)
    views         02  crop_sizes, batched_flip, batched_colour_jitter, self_check_02
    simclr        03  weighted_knn, projection_head, neighbour_label_agreement, self_check_03
    simclr_step   03  simclr_step
    fused_kernel  04  online_logsumexp, blocked_negatives_lse, negatives_lse_grad, self_check_04
    maml          05  inner_loop, linear_meta_gradient, self_check_05
    meta_updates  05  climbs, reptile_update
    episodes      06  sample_episode
    omniglot      06  protonet_logits, accuracy_ci95, self_check_06
    label_free    07  nt_xent_as_episodes, prototype_logits, umtra_task, supcon (optional), self_check_07
    beyond        08  enqueue, momentum_update, simsiam_loss, self_check_08

`quiz` makes the self-checks (a dict of multiple-choice and numeric answers, checked the same way).
`framework` runs a learner's function against each exercise's independent reference and says what
differs; `solutions` prints the worked solutions, which `python -m course_lib.assignments build` extracts
from the instructor notebooks into solutions.json (the checks never read it).
"""

from course_lib.checks import (autopsy, beyond, catches, episodes, fused_kernel, label_free, loss_math, maml, meta_updates,
                               omniglot, simclr, simclr_step, start_here, views)
from course_lib.checks.framework import (REGISTRY, Case, CheckFailed, Exercise, Result, UnknownExercise, check,
                                         hint, run)
from course_lib.checks.autopsy import *  # noqa: F401,F403
from course_lib.checks.beyond import *  # noqa: F401,F403
from course_lib.checks.catches import *  # noqa: F401,F403
from course_lib.checks.episodes import *  # noqa: F401,F403
from course_lib.checks.fused_kernel import *  # noqa: F401,F403
from course_lib.checks.label_free import *  # noqa: F401,F403
from course_lib.checks.loss_math import *  # noqa: F401,F403
from course_lib.checks.maml import *  # noqa: F401,F403
from course_lib.checks.meta_updates import *  # noqa: F401,F403
from course_lib.checks.omniglot import *  # noqa: F401,F403
from course_lib.checks.simclr import *  # noqa: F401,F403
from course_lib.checks.simclr_step import *  # noqa: F401,F403
from course_lib.checks.solutions import solution
from course_lib.checks.start_here import *  # noqa: F401,F403
from course_lib.checks.views import *  # noqa: F401,F403

__all__ = [
    "CheckFailed", "Case", "Exercise", "Result", "REGISTRY", "UnknownExercise", "check", "hint", "run", "solution",
    *start_here.__all__, *loss_math.__all__, *autopsy.__all__, *catches.__all__, *views.__all__, *simclr.__all__,
    *simclr_step.__all__, *fused_kernel.__all__, *maml.__all__, *meta_updates.__all__, *episodes.__all__,
    *omniglot.__all__, *label_free.__all__, *beyond.__all__,
]
